"""Bad input found by probing a real standalone: each gets a 400 naming the problem, or (for
what only a run can tell) fails its task saying why, and none leaves an ERROR or a traceback
in kiok's log, nor a response that is not valid JSON.

- a number param sent as ``"1e999"`` became infinity, and the run's view then held
  ``"args":{"x":Infinity}``, which no JSON parser reads;
- an http task's ``headers`` of any shape registered, and the worker logged an ERROR
  (``AttributeError``) when the task ran, blaming kiok; unknown ``config`` keys passed unseen;
- a trigger arg placed in an http task's ``method`` (``"é"``) or port (``99999``) raised out
  of the executor (an ERROR in the log);
- a cron step of 22 digits was taken (and cronsim then fired hourly).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from kiok.testing.process import Standalone

NUMBER_DAG = """
dag: {id: num, params: {x: {type: number, default: 1}, low: {type: number, maximum: 5, default: 1}}}
tasks: [{id: t, script: 'true'}]
"""

HTTP_DAG = """
dag:
  id: hostile_http
  params: {m: {type: string, default: GET}, h: {default: {}}, p: {type: integer, default: 9}}
tasks:
  - {id: method, type: http, timeout: 60s, config: {url: "http://127.0.0.1:9/", method: "${params.m}"}}
  - {id: headers, type: http, timeout: 60s, config: {url: "http://127.0.0.1:9/", headers: "${params.h}"}}
  - {id: port, type: http, timeout: 60s, config: {url: "http://127.0.0.1:${params.p}/"}}
"""


def _strict_json(text: str) -> Any:
    """``text`` parsed as JSON proper: ``Infinity``, ``-Infinity`` and ``NaN`` refused."""

    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    root = tmp_path_factory.mktemp("probed")
    standalone = Standalone(root / "kiok", {"KIOK_BACKUP_DIR": str(root / "backups")})
    standalone.start()
    yield standalone
    standalone.stop()


def _no_error_logged(node: Standalone) -> None:
    log = node.read_log()
    assert " ERROR " not in log and "Traceback" not in log, log[-3000:]


def _register(node: Standalone, yaml_text: str) -> Any:
    return node.api("POST", "/api/v1/dags", content=yaml_text, headers={"Content-Type": "application/yaml"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"x": "1e999"}, "args.x: expected a number, got '1e999'"),
        ({"x": "-1e999"}, "args.x: expected a number, got '-1e999'"),
        ({"low": "-1e999"}, "args.low: expected a number, got '-1e999'"),
    ],
)
def test_a_number_past_a_float_is_refused(node: Standalone, args: dict[str, str], message: str) -> None:
    _register(node, NUMBER_DAG).raise_for_status()
    answer = node.api("POST", "/api/v1/dags/num/runs", json={"args": args})
    assert answer.status_code == 400, answer.text
    assert message in answer.text, answer.text


def test_run_views_are_strict_json(node: Standalone) -> None:
    _register(node, NUMBER_DAG).raise_for_status()
    run_id = node.trigger("num", {"x": "1e-999", "low": "2.5"})
    node.wait_run(run_id)
    run = _strict_json(node.api("GET", f"/api/v1/runs/{run_id}").text)
    assert run["args"] == {"x": 0.0, "low": 2.5}
    listed = _strict_json(node.api("GET", "/api/v1/runs", params={"dag": "num"}).text)
    assert any(r["runId"] == run_id for r in listed["runs"])


def test_a_default_past_a_float_is_refused(node: Standalone) -> None:
    answer = _register(node, NUMBER_DAG.replace("default: 1}", "default: '1e999'}", 1))
    assert answer.status_code == 400, answer.text
    assert "dag.params.x.default: expected a number, got '1e999'" in answer.text, answer.text


@pytest.mark.parametrize(
    "headers", ["[1]", "[a]", "[[a, b]]", "'5'", "5", "true", "'\"abc\"'", "{a: ~}", "{a: 5}", "{a: [1]}"]
)
def test_http_headers_of_the_wrong_shape_are_refused(node: Standalone, headers: str) -> None:
    task = f"{{id: t, type: http, config: {{url: 'http://127.0.0.1:9/', headers: {headers}}}}}"
    answer = _register(node, f"dag: {{id: hdr}}\ntasks: [{task}]")
    assert answer.status_code == 400, (headers, answer.text)
    assert "tasks[0].config.headers" in answer.text, answer.text


def test_unknown_http_config_keys_are_refused(node: Standalone) -> None:
    answer = _register(
        node, "dag: {id: cfg}\ntasks: [{id: t, type: http, config: {url: 'http://127.0.0.1:9/', retries: 3}}]"
    )
    assert answer.status_code == 400, answer.text
    assert "tasks[0].config.retries" in answer.text and "unknown key 'retries'" in answer.text, answer.text


def test_trigger_args_that_break_an_http_request_fail_its_task(node: Standalone) -> None:
    _register(node, HTTP_DAG).raise_for_status()
    run_id = node.trigger("hostile_http", {"m": "é", "h": [1], "p": 99999})
    run = node.wait_run(run_id, 60)
    errors = {tid: task["error"] or "" for tid, task in run["tasks"].items()}
    assert all(task["state"] == "FAILED" for task in run["tasks"].values()), run
    assert "config.method: unknown method 'É'" in errors["method"], errors
    assert "config.headers: expected a JSON object of header names to string values" in errors["headers"]
    assert "port 99999 is out of range" in errors["port"], errors
    assert not any("kiok could not run the task" in e for e in errors.values()), errors
    _no_error_logged(node)


@pytest.mark.parametrize("cron", ["*/1000000000000000000000 * * * *", "0 */25 * * *", "0 0 * */13 *"])
def test_a_cron_step_past_its_field_is_refused(node: Standalone, cron: str) -> None:
    answer = _register(node, f"dag: {{id: steps, schedule: '{cron}'}}\ntasks: [{{id: t, script: 'true'}}]")
    assert answer.status_code == 400, answer.text
    assert "dag.schedule" in answer.text and "step" in answer.text, answer.text
    backup = node.api("PUT", "/api/v1/admin/backup/cron", json={"cron": cron})
    assert backup.status_code == 400, backup.text
    assert "cron:" in backup.text and "step" in backup.text, backup.text


def test_nothing_above_left_an_error_in_the_log(node: Standalone) -> None:
    _no_error_logged(node)
