"""What the logs say happened, against a real ``kiok standalone``: a task's own log ends with
why it stopped (timed out, cancelled, its worker lost); the run log says who cancelled, what
became of an interrupted attempt and an http task's status. Also: typed trigger args from the
CLI (``--conf``) reach ``${params.x}`` and ``KIOK_PARAM_X`` as the same value."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone, free_port
from tests.integration.test_cli import KiokCli, cli_for, show

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    env = {"KIOK_WORKER_TASK_KILL_GRACE_MS": "500", "KIOK_JOBLOG_WORKER_BATCH_INTERVAL_MS": "100"}
    n = Standalone(tmp_path_factory.mktemp("logevents") / "kiok", env)
    n.start()
    yield n
    n.stop()


def test_a_timed_out_task_says_so_in_its_own_log(node: Standalone) -> None:
    node.register("dag: {id: ev_timeout}\ntasks: [{id: slow, script: 'echo begun; sleep 30', timeout: 1s}]\n")
    run = node.wait_run(node.trigger("ev_timeout"))
    assert run["state"] == "FAILED"
    log = node.log(run["runId"], "slow")
    assert log.startswith("begun\n")
    assert log.rstrip().endswith(
        "[kiok] attempt 1 timed out after 1s; process group stopped (SIGTERM, then SIGKILL after 0.5s)"
    ), log


def test_a_retried_attempts_run_log_line_says_why_it_failed(node: Standalone) -> None:
    """The day-one probe (session 27): the run log said why only the last attempt failed;
    a retried one read "RETRYING (exit code -15; retry at …)" for a timeout, or "exit code 1"
    for a python exception."""
    node.register(
        "dag: {id: ev_retry_why}\ntasks:\n"
        "  - {id: p, type: python, script: 'raise ValueError(\"bad input\")',"
        " retries: 1, retry_delay: 100ms}\n"
        "  - {id: t, script: 'sleep 30', timeout: 1s, retries: 1, retry_delay: 100ms}\n"
    )
    run = node.wait_run(node.trigger("ev_retry_why"))
    assert run["state"] == "FAILED"
    lines = node.log(run["runId"], "__run__").splitlines()
    retried = {tid: next(x for x in lines if f" {tid} attempt 1 RETRYING (" in x) for tid in ("p", "t")}
    assert "ValueError: bad input" in retried["p"] and "; retry at " in retried["p"], retried
    assert "timed out after 1s" in retried["t"] and "; retry at " in retried["t"], retried


def test_a_cancelled_task_says_so_and_the_run_log_names_who(node: Standalone) -> None:
    node.register("dag: {id: ev_cancel}\ntasks: [{id: slow, script: 'echo begun; sleep 30'}]\n")
    run_id = node.trigger("ev_cancel")
    node.wait_for(lambda: "begun" in node.log(run_id, "slow"), 30, "the task to start")
    assert node.api("POST", f"/api/v1/runs/{run_id}/cancel").status_code == 200
    assert node.wait_run(run_id)["state"] == "CANCELLED"
    log = node.log(run_id, "slow")
    assert log.rstrip().endswith(
        "[kiok] attempt 1 cancelled by admin: the run was cancelled; process group stopped "
        "(SIGTERM, then SIGKILL after 0.5s)"
    ), log
    assert "cancel requested by admin" in node.log(run_id, "__run__")


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/ok" else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_http_tasks_run_log_line_shows_its_status(node: Standalone, web: str) -> None:
    node.register(
        f"""
dag: {{id: ev_http}}
tasks:
  - {{id: ok, type: http, url: "{web}/ok"}}
  - {{id: busy, type: http, url: "{web}/busy"}}
"""
    )
    run_id = node.trigger("ev_http")
    assert node.wait_run(run_id)["state"] == "FAILED"
    runlog = node.log(run_id, "__run__")
    assert "ok attempt 1 SUCCESS (HTTP 200," in runlog, runlog
    assert f"busy attempt 1 FAILED (HTTP 503 from GET {web}/busy," in runlog, runlog


def test_an_attempt_interrupted_by_a_lost_worker_is_named_in_both_logs(
    standalone_factory: Any, task_tmp_path: Path
) -> None:
    kiok: Standalone = standalone_factory(env={"KIOK_JOBLOG_WORKER_BATCH_INTERVAL_MS": "100"})
    marks = task_tmp_path
    kiok.register(
        f"""
dag: {{id: ev_lost}}
tasks:
  - {{id: slow, script: 'echo "try $KIOK_ATTEMPT" >> {marks}/slow; echo out-$KIOK_ATTEMPT; sleep 2'}}
"""
    )
    run_id = kiok.trigger("ev_lost")
    kiok.wait_for(lambda: "out-1" in kiok.log(run_id, "slow"), 30, "the first attempt's output")
    kiok.kill9()
    kiok.start()
    assert kiok.wait_run(run_id)["state"] == "SUCCESS"
    log = kiok.log(run_id, "slow")
    assert "[kiok] attempt 1 interrupted: its worker " in log and "was lost; retried as attempt 2" in log, log
    separator = log.index("[kiok] --- attempt 2 ---")
    assert log.index("out-1") < log.index("interrupted") < separator < log.index("out-2")
    runlog = kiok.log(run_id, "__run__")
    assert "slow attempt 1 interrupted (its worker " in runlog, runlog
    assert "running it again as attempt 2" in runlog


@pytest.fixture(scope="module")
def cli(node: Standalone, tmp_path_factory: pytest.TempPathFactory) -> KiokCli:
    logged_in = cli_for(node, tmp_path_factory.mktemp("ev-cli") / "config")
    logged_in.ok("login", "--user", "admin", "--password", ADMIN_PASSWORD)
    return logged_in


def test_conf_gives_typed_args_and_kiok_param_matches_params(node: Standalone, cli: KiokCli) -> None:
    node.register(
        """
dag:
  id: ev_conf
  params:
    day: "#{nowFormatted('yyyy-MM-dd')}"
    n: {type: integer, default: 1}
    tags: {default: []}
tasks:
  - id: sh
    script: 'echo "p=${params.day} e=$KIOK_PARAM_DAY n=${params.n} en=$KIOK_PARAM_N t=$KIOK_PARAM_TAGS"'
  - id: py
    type: python
    script: |
      import os
      print(${params.day} == os.environ["KIOK_PARAM_DAY"], ${params.n} + 1, ${params.tags})
"""
    )
    run_id = cli.ok("runs", "trigger", "ev_conf", "--conf", '{"n": 3, "tags": ["a", "b"]}').strip()
    assert node.wait_run(run_id)["state"] == "SUCCESS"
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert node.log(run_id, "sh").strip() == f"p={today} e={today} n=3 en=3 t={json.dumps(['a', 'b'])}"
    assert node.log(run_id, "py").strip() == "True 4 ['a', 'b']"
    # --arg still works, and overrides a --conf key
    run_id = cli.ok("trigger", "ev_conf", "--conf", '{"n": 5}', "--arg", "day=x").strip()
    assert node.wait_run(run_id)["state"] == "SUCCESS"
    assert node.log(run_id, "sh").startswith("p=x e=x n=5 en=5")


@pytest.mark.parametrize(
    ("conf", "words"),
    [('{"n": 3', "--conf is not valid JSON: Expecting"), ("[1, 2]", "--conf must be a JSON object")],
)
def test_bad_conf_is_one_error_line_and_exit_2(cli: KiokCli, conf: str, words: str) -> None:
    done = cli("trigger", "ev_conf", "--conf", conf)
    assert done.returncode == 2, show(done)
    assert done.stderr.startswith(f"error: {words}") and done.stderr.count("\n") == 1, show(done)
    assert done.stdout == ""
