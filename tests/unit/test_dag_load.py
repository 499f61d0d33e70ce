"""Document shape: YAML/JSON parsing, keys, types, aliases and the round trip through to_dict."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from kiok.dag.load import compiled_spec, spec_from_body, spec_from_document, spec_from_json, spec_from_yaml
from kiok.dag.spec import DEFAULT_MAX_ACTIVE_RUNS, DEFAULT_RETRY_DELAY_MS, TaskType, TriggerRule
from kiok.errors import DagValidationError
from kiok.ids import TaskId

DESIGN_EXAMPLE = """\
dag:
  id: daily_etl
  schedule: "0 2 * * *"      # 5-field cron; omit for manual-only
  timezone: UTC
  catchup: false
  max_active_runs: 1
  default_timeout: 30m
  labels: [linux]
  params: {region: eu}
tasks:
  - id: extract
    type: shell
    script: "echo extract ${params.region} #{nowFormatted('yyyy-MM-dd')}"
    retries: 2
    retry_delay: 10s
    timeout: 20m
  - id: notify
    type: http
    requires: [extract]
    trigger_rule: all_done
    config: {url: "https://example.invalid/hook", method: POST, body: '{"t":"${secret.api_token}"}'}
"""


def test_design_example() -> None:
    spec = spec_from_yaml(DESIGN_EXAMPLE)
    assert spec.id == "daily_etl" and spec.schedule == "0 2 * * *" and spec.max_active_runs == 1
    assert spec.default_timeout_ms == 30 * 60_000 and spec.labels == ("linux",)
    assert spec.params == {"region": "eu"}
    extract, notify = spec.tasks
    assert extract.script == "echo extract ${params.region} #{nowFormatted('yyyy-MM-dd')}"
    assert (extract.retries, extract.retry_delay_ms, extract.timeout_ms) == (2, 10_000, 20 * 60_000)
    assert notify.type is TaskType.HTTP and notify.trigger_rule is TriggerRule.ALL_DONE
    assert notify.config["body"] == '{"t":"${secret.api_token}"}'


def test_defaults() -> None:
    spec = spec_from_yaml("dag: {id: d}\ntasks: [{id: a, script: x}]")
    t = spec.tasks[0]
    assert (spec.timezone, spec.catchup, spec.max_active_runs, spec.schedule) == ("UTC", False, 16, None)
    assert spec.max_active_runs == DEFAULT_MAX_ACTIVE_RUNS and spec.default_timeout_ms is None
    assert t.type is TaskType.SHELL and t.retries == 0 and t.retry_delay_ms == DEFAULT_RETRY_DELAY_MS
    assert t.retry_exponential_backoff is True and t.timeout_ms is None


def test_yaml_error_names_the_line() -> None:
    text = "dag:\n  id: d\ntasks:\n  - id: a\n    script: [unclosed\n  - id: b\n"
    with pytest.raises(DagValidationError, match=r"invalid YAML at line \d+") as e:
        spec_from_yaml(text)
    assert "line 6" in str(e.value)


def test_yaml_tab_error_line() -> None:
    with pytest.raises(DagValidationError, match="line 3"):
        spec_from_yaml("dag:\n  id: d\n\tbad: 1\n")


def test_json_error_names_line_and_column() -> None:
    with pytest.raises(DagValidationError, match=r"invalid JSON at line 3, column \d+"):
        spec_from_json('{\n "dag": {"id": "d"},\n "tasks": [,]\n}')


def test_unknown_key_is_named_with_a_suggestion() -> None:
    with pytest.raises(DagValidationError) as e:
        spec_from_yaml("dag: {id: d}\ntasks:\n- {id: a, script: x}\n- {id: b, script: x, requirs: [a]}\n")
    assert e.value.field == "tasks[1].requirs" and "did you mean 'requires'" in str(e.value)
    with pytest.raises(DagValidationError, match="unknown key 'shedule'") as e:
        spec_from_yaml("dag: {id: d, shedule: '* * * * *'}\ntasks: [{id: a, script: x}]")
    assert e.value.field == "dag.shedule"
    with pytest.raises(DagValidationError, match="unknown key 'task'"):
        spec_from_document({"dag": {"id": "d"}, "task": []})


@pytest.mark.parametrize(
    ("task", "field"),
    [
        ({"retries": "2"}, "tasks[2].retries"),
        ({"retries": True}, "tasks[2].retries"),
        ({"requires": "a"}, "tasks[2].requires"),
        ({"requires": [1]}, "tasks[2].requires[0]"),
        ({"script": 5}, "tasks[2].script"),
        ({"retry_exponential_backoff": "yes"}, "tasks[2].retry_exponential_backoff"),
        ({"config": ["url"]}, "tasks[2].config"),
        ({"timeout": "soon"}, "tasks[2].timeout"),
        ({"timeout": "1m", "timeoutMs": 60000}, "tasks[2].timeout"),
    ],
)
def test_wrong_types_name_the_field(task: dict[str, object], field: str) -> None:
    doc = {
        "dag": {"id": "d"},
        "tasks": [{"id": "a", "script": "x"}, {"id": "b", "script": "x"}, {"id": "c", "script": "x", **task}],
    }
    with pytest.raises(DagValidationError) as e:
        spec_from_document(doc)
    assert e.value.field == field


@pytest.mark.parametrize(
    ("dag", "field"),
    [
        ({"catchup": "no"}, "dag.catchup"),
        ({"max_active_runs": 1.5}, "dag.max_active_runs"),
        ({"labels": "linux"}, "dag.labels"),
        ({"labels": ["ok", ""]}, "dag.labels[1]"),
        ({"params": ["a"]}, "dag.params"),
        ({"params": {"bad key": 1}}, "dag.params.bad key"),
        ({"params": {"x": {1, 2}}}, "dag.params.x"),
        ({"schedule": 5}, "dag.schedule"),
    ],
)
def test_wrong_dag_types_name_the_field(dag: dict[str, object], field: str) -> None:
    with pytest.raises(DagValidationError) as e:
        base: dict[str, object] = {"id": "d"}
        spec_from_document({"dag": base | dag, "tasks": [{"id": "a", "script": "x"}]})
    assert e.value.field == field


@pytest.mark.parametrize("doc", [None, [], "dag", {"tasks": []}, {"dag": {"id": "d"}, "tasks": {"a": 1}}])
def test_document_shape(doc: object) -> None:
    with pytest.raises(DagValidationError):
        spec_from_document(doc)


def test_kiok_style_ms_fields_and_normalisation() -> None:
    spec = spec_from_document(
        {
            "dag": {
                "id": "d",
                "defaultTimeoutMs": 1_800_000,
                "labels": ["Linux ", "gpu", "linux"],
                "schedule": "",
            },
            "tasks": [{"id": "a", "script": "x", "timeoutMs": 60_000, "retryDelayMs": 0, "requires": []}],
        }
    )
    assert spec.default_timeout_ms == 1_800_000 and spec.labels == ("gpu", "linux") and spec.schedule is None
    assert spec.tasks[0].timeout_ms == 60_000 and spec.tasks[0].retry_delay_ms == 0


def test_config_is_a_flat_string_map() -> None:
    # A shell task: an http task's config takes only its documented keys (kiok.dag.validate).
    spec = spec_from_yaml(
        "dag: {id: d}\ntasks:\n- id: h\n  script: x\n  config:\n    url: https://x\n"
        "    headers: {A: b}\n    retries: 3\n    flag: true\n    list: [1, two]\n    empty: null\n"
    )
    assert dict(spec.tasks[0].config) == {
        "url": "https://x",
        "headers": '{"A": "b"}',
        "retries": "3",
        "flag": "true",
        "list": '[1, "two"]',
        "empty": "null",
    }


def test_http_fields_may_sit_on_the_task() -> None:
    spec = spec_from_yaml("dag: {id: d}\ntasks: [{id: h, type: http, url: 'https://x', method: POST}]")
    assert dict(spec.tasks[0].config) == {"url": "https://x", "method": "POST"}
    with pytest.raises(DagValidationError, match="both"):
        spec_from_yaml(
            "dag: {id: d}\ntasks: [{id: h, type: http, url: 'https://x', config: {url: 'https://y'}}]"
        )
    with pytest.raises(DagValidationError, match="unknown key 'url'"):
        spec_from_yaml("dag: {id: d}\ntasks: [{id: a, script: x, url: 'https://x'}]")


def test_yaml_dates_become_iso_strings() -> None:
    spec = spec_from_yaml("dag: {id: d, params: {day: 2024-01-31}}\ntasks: [{id: a, script: x}]")
    assert spec.params == {"day": "2024-01-31"}


def test_repeated_upstream_kept_once_in_order() -> None:
    spec = spec_from_yaml(
        "dag: {id: d}\ntasks:\n- {id: a, script: x}\n- {id: b, script: x}\n"
        "- {id: c, script: x, requires: [b, a, b]}"
    )
    assert spec.task("c").requires == ("b", "a")


def test_body_by_content_type_and_sniffing() -> None:
    spec = spec_from_yaml(DESIGN_EXAMPLE)
    as_json = json.dumps(spec.to_dict()).encode()
    as_yaml = DESIGN_EXAMPLE.encode()
    assert spec_from_body(as_json, "application/json") == spec
    assert spec_from_body(as_json, None) == spec
    assert spec_from_body(as_yaml, "application/x-yaml; charset=utf-8") == spec
    assert spec_from_body(as_yaml, "text/plain") == spec
    assert spec_from_body(b"\xef\xbb\xbf" + as_yaml, None) == spec
    with pytest.raises(DagValidationError, match="invalid JSON"):
        spec_from_body(as_yaml, "application/json")
    with pytest.raises(DagValidationError, match="UTF-8"):
        spec_from_body(b"\xff\xfe", None)


def test_round_trip_through_yaml_and_json() -> None:
    spec = spec_from_yaml(DESIGN_EXAMPLE)
    assert spec_from_document(spec.to_dict()) == spec
    assert spec_from_json(json.dumps(spec.to_dict())) == spec
    assert spec_from_yaml(yaml.safe_dump(spec.to_dict())) == spec


def test_alias_bombs_and_cycles_are_refused_quickly() -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    bomb = (
        "dag:\n  id: d\n  params:\n"
        + "".join(f"    {line}\n" for line in levels)
        + "tasks: [{id: a, script: x}]"
    )
    with pytest.raises(DagValidationError, match="too large"):
        spec_from_yaml(bomb)
    with pytest.raises(DagValidationError, match="nested too deeply"):
        spec_from_yaml("dag:\n  id: d\n  params: {loop: &l [*l]}\ntasks: [{id: a, script: x}]")
    with pytest.raises(DagValidationError, match="nested too deeply"):
        spec_from_json('{"dag": {"id": "d", "params": {"x": ' + "[" * 100 + "]" * 100 + "}}}")


def test_compiled_spec_is_shared_between_equal_documents_only() -> None:
    doc = {"dag": {"id": "cached"}, "tasks": [{"id": "a", "script": "true"}]}
    first = compiled_spec(doc)
    assert compiled_spec({"dag": {"id": "cached"}, "tasks": [{"id": "a", "script": "true"}]}) is first
    changed = compiled_spec({"dag": {"id": "cached"}, "tasks": [{"id": "a", "script": "false"}]})
    assert changed is not first and changed.task(TaskId("a")).script == "false"
    with pytest.raises(DagValidationError, match="tasks"):
        compiled_spec({"dag": {"id": "cached"}, "tasks": "nope"})


@pytest.mark.parametrize(
    ("macro", "cron"),
    [("@daily", "0 0 * * *"), ("@Hourly", "0 * * * *"), ("@weekly", "0 0 * * 0"), ("@yearly", "0 0 1 1 *")],
)
def test_cron_macros_are_expanded(macro: str, cron: str) -> None:
    spec = spec_from_yaml(f"dag: {{id: d, schedule: '{macro}'}}\ntasks: [{{id: t, script: 'true'}}]")
    assert spec.schedule == cron


@pytest.mark.parametrize("macro", ["@every 1h", "@reboot"])
def test_other_at_schedules_are_refused_by_name(macro: str) -> None:
    with pytest.raises(DagValidationError, match=f"unsupported schedule '{macro}'"):
        spec_from_yaml(f"dag: {{id: d, schedule: '{macro}'}}\ntasks: [{{id: t, script: 'true'}}]")


@pytest.mark.parametrize(
    ("load", "text", "where"),
    [
        (
            spec_from_yaml,
            "dag: {id: d}\ntasks:\n  - id: t\n    script: 'true'\n    script: 'rm -rf x'\n",
            "line 5",
        ),
        (
            spec_from_yaml,
            "dag: {id: d, timeout: 1s, timeout: 1h}\ntasks: [{id: t, script: 'true'}]\n",
            "line 1",
        ),
        (
            spec_from_json,
            '{"dag": {"id": "d"}, "tasks": [{"id": "t", "script": "a", "script": "b"}]}',
            "JSON",
        ),
    ],
)
def test_a_key_given_twice_is_refused_not_half_read(load: Any, text: str, where: str) -> None:
    """YAML and JSON keep the last of two equal keys; a DAG that sets a task's script or a
    timeout twice would run something its author did not read last."""
    with pytest.raises(DagValidationError) as e:
        load(text)
    assert "duplicate key" in e.value.message and where in e.value.message, e.value.message


@pytest.mark.parametrize(
    ("dag", "field"),
    [
        ({"id": "o", "schedule": "61 2 * * *"}, "dag.schedule"),
        ({"id": "o", "timezone": "Mars/Olympus"}, "dag.timezone"),
        ({"id": "o", "max_active_runs": 0}, "dag.max_active_runs"),
        ({"id": "o", "sla": "0s"}, "dag.sla"),
    ],
)
def test_the_first_problem_is_reported_in_document_order(dag: dict[str, object], field: str) -> None:
    """Found by the UI review: a DAG's own field (an invalid cron at line 3) was reported after
    a task's unreadable field (line 5), as the tasks were read before the DAG's fields were
    checked: docs/dags.md promises the first problem in document order."""
    doc = {"dag": dag, "tasks": [{"id": "a", "script": "x", "timeout": "10 parsecs"}]}
    with pytest.raises(DagValidationError) as refused:
        spec_from_document(doc, registering=True)
    assert refused.value.field == field, refused.value
