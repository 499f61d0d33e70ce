"""Every refusal of kiok.dag.validate, each asserting the message names the problem."""

from __future__ import annotations

import pytest

from kiok.dag.load import spec_from_document, spec_from_json, spec_from_yaml
from kiok.dag.spec import DagSpec, TaskSpec, TaskType
from kiok.dag.validate import validate
from kiok.errors import DagValidationError
from kiok.ids import DagId, TaskId


def _doc(*tasks: dict[str, object], **dag: object) -> dict[str, object]:
    return {"dag": {"id": "d", **dag}, "tasks": list(tasks)}


def _sh(task_id: str, *requires: str, **more: object) -> dict[str, object]:
    t: dict[str, object] = {"id": task_id, "script": f"echo {task_id}", **more}
    if requires:
        t["requires"] = list(requires)
    return t


def _refuse(doc: dict[str, object]) -> DagValidationError:
    with pytest.raises(DagValidationError) as e:
        spec_from_document(doc)
    return e.value


def test_valid_minimal_dag() -> None:
    spec = spec_from_document(_doc(_sh("a"), _sh("b", "a")))
    assert spec.task_ids == ("a", "b")
    assert spec.task("b").requires == ("a",)


def test_no_tasks() -> None:
    err = _refuse({"dag": {"id": "d"}, "tasks": []})
    assert "at least one task" in str(err) and err.field == "tasks"


def test_duplicate_task_id_named() -> None:
    err = _refuse(_doc(_sh("a"), _sh("dup"), _sh("dup")))
    assert "duplicate task id 'dup'" in str(err)
    assert err.field == "tasks[2].id"


def test_unknown_requires_named_with_its_task() -> None:
    err = _refuse(_doc(_sh("a"), _sh("b", "a", "ghost")))
    assert "'ghost'" in str(err) and "'b'" in str(err)
    assert err.field == "tasks[1].requires"


def test_self_dependency() -> None:
    err = _refuse(_doc(_sh("a", "a")))
    assert "requires itself" in str(err) and "'a'" in str(err)


def test_cycle_names_its_tasks_in_order() -> None:
    err = _refuse(_doc(_sh("start"), _sh("a", "c", "start"), _sh("b", "a"), _sh("c", "b")))
    assert "cycle: a -> b -> c -> a" in str(err)


def test_long_chain_is_not_a_cycle_and_does_not_recurse() -> None:
    tasks = [_sh("t0")] + [_sh(f"t{i}", f"t{i - 1}") for i in range(1, 3000)]
    assert len(spec_from_document(_doc(*tasks)).tasks) == 3000


def test_invalid_cron() -> None:
    err = _refuse(_doc(_sh("a"), schedule="0 2 * *"))
    assert err.field == "dag.schedule" and "5 fields" in str(err)
    err = _refuse(_doc(_sh("a"), schedule="61 * * * *"))
    assert err.field == "dag.schedule" and "61" in str(err)


def test_bad_time_zone() -> None:
    err = _refuse(_doc(_sh("a"), timezone="Mars/Olympus"))
    assert err.field == "dag.timezone" and "Mars/Olympus" in str(err)


@pytest.mark.parametrize("script", [None, "", "   \n"])
def test_missing_script(script: str | None) -> None:
    err = _refuse(_doc({"id": "a", "type": "python", "script": script}))
    assert err.field == "tasks[0].script" and "non-empty script" in str(err)


def test_missing_url() -> None:
    err = _refuse(_doc({"id": "hook", "type": "http", "config": {"method": "POST"}}))
    assert err.field == "tasks[0].config.url" and "needs config.url" in str(err)


def test_url_scheme() -> None:
    err = _refuse(_doc({"id": "hook", "type": "http", "config": {"url": "ftp://x"}}))
    assert "http:// or https://" in str(err)


def test_url_may_be_a_placeholder() -> None:
    spec = spec_from_document(_doc({"id": "h", "type": "http", "config": {"url": "${conn.api.url}/x"}}))
    assert spec.tasks[0].config["url"] == "${conn.api.url}/x"


def test_http_method() -> None:
    err = _refuse(_doc({"id": "h", "type": "http", "config": {"url": "https://x", "method": "FETCH"}}))
    assert err.field == "tasks[0].config.method" and "GET, POST, PUT, PATCH, DELETE, HEAD" in str(err)


def test_http_takes_no_script() -> None:
    err = _refuse(_doc({"id": "h", "type": "http", "script": "x", "config": {"url": "https://x"}}))
    assert err.field == "tasks[0].script"


def test_unknown_type_names_allowed_ones() -> None:
    err = _refuse(_doc({"id": "a", "type": "livy", "script": "x"}))
    assert err.field == "tasks[0].type" and "'livy'" in str(err) and "shell, python, http" in str(err)


def test_unknown_trigger_rule() -> None:
    err = _refuse(_doc(_sh("a", trigger_rule="any")))
    assert err.field == "tasks[0].trigger_rule" and "all_done" in str(err)


@pytest.mark.parametrize(
    ("task", "field"),
    [
        ({"timeout": "0s"}, "tasks[0].timeout"),
        ({"timeoutMs": 0}, "tasks[0].timeout"),
        ({"max_retry_delay": 0}, "tasks[0].max_retry_delay"),
        ({"retries": 101}, "tasks[0].retries"),
        ({"retries": -1}, "tasks[0].retries"),
    ],
)
def test_limits(task: dict[str, object], field: str) -> None:
    assert _refuse(_doc(_sh("a", **task))).field == field


def test_default_timeout_positive() -> None:
    assert _refuse(_doc(_sh("a"), default_timeout="0m")).field == "dag.default_timeout"


def test_max_active_runs_at_least_one() -> None:
    assert _refuse(_doc(_sh("a"), max_active_runs=0)).field == "dag.max_active_runs"


@pytest.mark.parametrize("bad", ["", "-x", "a/b", "a b", "x" * 201, "é"])
def test_ids_are_url_safe(bad: str) -> None:
    assert _refuse({"dag": {"id": bad}, "tasks": [_sh("a")]}).field == "dag.id"
    assert _refuse(_doc({"id": bad, "script": "x"})).field == "tasks[0].id"


def test_validate_on_hand_built_spec_canonicalises() -> None:
    spec = DagSpec(
        id=DagId("d"),
        name="d",
        labels=("GPU", " linux", "gpu"),
        tasks=(TaskSpec(id=TaskId("a"), type=TaskType.SHELL, script="x"),),
    )
    out = validate(spec)
    assert out.labels == ("gpu", "linux") and out.name == ""
    assert validate(out) is out


def test_validate_rejects_bad_hand_built_spec() -> None:
    spec = DagSpec(id=DagId("d"), tasks=(TaskSpec(id=TaskId("a"), script="x", requires=(TaskId("z"),)),))
    with pytest.raises(DagValidationError, match="unknown task 'z'"):
        validate(spec)


def test_yaml_and_json_paths_validate_too() -> None:
    with pytest.raises(DagValidationError, match="cycle: a -> b -> a"):
        spec_from_yaml(
            "dag: {id: d}\ntasks:\n- {id: a, script: x, requires: [b]}\n- {id: b, script: x, requires: [a]}\n"
        )
    with pytest.raises(DagValidationError, match="at least one task"):
        spec_from_json('{"dag": {"id": "d"}, "tasks": []}')


def _http(**config: object) -> dict[str, object]:
    return _doc({"id": "h", "type": "http", "config": {"url": "http://127.0.0.1:9/", **config}})


def _refuse_new(doc: dict[str, object]) -> DagValidationError:
    with pytest.raises(DagValidationError) as e:
        spec_from_document(doc, registering=True)
    return e.value


@pytest.mark.parametrize(
    "headers",
    [[1], ["a"], [["a", "b"]], "5", 5, True, '"abc"', {"a": None}, {"a": 5}, {"a": [1]}, "{", " ", "null"],
)
def test_http_headers_are_an_object_of_strings(headers: object) -> None:
    err = _refuse_new(_http(headers=headers))
    assert err.field == "tasks[0].config.headers", err
    assert "a JSON object of header names to string values" in str(err)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"a b": "x"}, "'a b' is not a header name"),
        ({"X-A": "x\r\nInjected: y"}, "the value of 'X-A' holds a character a header cannot carry"),
    ],
)
def test_http_headers_no_request_can_carry_are_refused(headers: object, message: str) -> None:
    err = _refuse_new(_http(headers=headers))
    assert err.field == "tasks[0].config.headers" and message in str(err), err


@pytest.mark.parametrize(
    "headers",
    [
        {"X-A": "b", "Authorization": "Bearer ${conn.api.token}"},
        {"X-${params.h}": "${params.h}"},  # what the placeholders become is checked per run
        '{"X-A": "b"}',
        {},
        "",
        "${params.h}",  # resolved per run: the executor checks what it becomes
        '{"X-A": ${params.h}}',
    ],
)
def test_http_headers_that_pass(headers: object) -> None:
    doc = _http(headers=headers)
    doc["dag"] = {"id": "d", "params": {"h": "x"}}
    assert spec_from_document(doc, registering=True).tasks[0].config.get("headers") is not None


def test_unknown_http_config_keys_are_refused() -> None:
    err = _refuse_new(_http(method="POST", retries=3))
    assert err.field == "tasks[0].config.retries"
    assert "unknown key 'retries'; allowed: body, headers, method, url" in str(err)
    err = _refuse_new(_http(header={"a": "b"}))
    assert err.field == "tasks[0].config.header" and "did you mean 'headers'?" in str(err)
    documented = _http(method="POST", body='{"a": 1}', headers={"Content-Type": "application/json"})
    assert set(spec_from_document(documented, registering=True).tasks[0].config) == {
        "url",
        "method",
        "body",
        "headers",
    }


def test_a_stored_http_task_keeps_compiling() -> None:
    """Specs stored before these checks compile as they did: their runs go on, and the
    executor fails a task whose headers are no object of strings."""
    spec = spec_from_document(_http(headers=[1], retries=3))
    assert dict(spec.tasks[0].config) == {"url": "http://127.0.0.1:9/", "headers": "[1]", "retries": "3"}


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("*/1000000000000000000000 * * * *", "minute step 1000000000000000000000 is larger than the field"),
        ("*/61 * * * *", "minute step 61"),
        ("0 */25 * * *", "hour step 25"),
        ("0 0 1-10/32 * *", "day-of-month step 32"),
        ("0 0 * */13 *", "month step 13"),
        ("0 0 * * 1/8", "day-of-week step 8"),
        ("0,*/" + "9" * 5000 + " * * * *", "minute step 999"),
    ],
)
def test_a_cron_step_past_its_field_is_refused(cron: str, message: str) -> None:
    err = _refuse_new(_doc(_sh("a"), schedule=cron))
    assert err.field == "dag.schedule" and message in str(err), err
    assert len(str(err)) < 400


@pytest.mark.parametrize(
    "cron", ["*/60 * * * *", "0 */24 * * *", "0 0 */31 * *", "0 0 1 */12 *", "0 0 * * */7"]
)
def test_a_cron_step_as_large_as_its_field_passes(cron: str) -> None:
    assert spec_from_document(_doc(_sh("a"), schedule=cron), registering=True).schedule == cron


def test_a_stored_schedule_with_a_huge_step_keeps_compiling() -> None:
    cron = "*/1000000000000000000000 * * * *"
    assert spec_from_document(_doc(_sh("a"), schedule=cron)).schedule == cron
