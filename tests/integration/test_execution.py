"""Task execution from outside: task types, failures, trigger rules, retries, timeouts,
placeholders and environment, isolation of attempts, cancel and task slots.

Every test talks to a real ``kiok standalone`` over HTTP; nothing is mocked."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kiok.config import TASK_VARIABLES
from kiok.testing.process import ADMIN_PASSWORD, Standalone


def ts(iso: str) -> float:
    """An API time (ISO 8601 UTC) as epoch seconds."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie nobody reaped counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    """A standalone whose worker has a single task slot, a 3 s cluster-wide default task
    timeout and a 500 ms kill grace."""
    env = {
        "KIOK_WORKER_TASK_SLOTS": "1",
        "KIOK_SCHEDULER_DEFAULT_TASK_TIMEOUT_MS": "3000",
        "KIOK_WORKER_TASK_KILL_GRACE_MS": "500",
    }
    node = Standalone(tmp_path_factory.mktemp("oneslot") / "kiok", env)
    node.start()
    yield node
    node.stop()


# --- task types ------------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.received.append(
            {"method": self.command, "path": self.path, "body": body, "x-test": self.headers.get("X-Test")}
        )
        if self.path == "/endless":  # an answer that never ends: the task logs 1 MiB of it
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            with contextlib.suppress(OSError):  # the task stops reading: the connection closes
                while True:
                    self.wfile.write(b"z" * 65536)
            return
        if self.path == "/ok":
            code, payload = 200, "all-good-body"
        elif self.path == "/echo":
            code, payload = 200, "echo:" + body
        else:
            code, payload = 500, "kaput-body-from-server"
        data = payload.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_target() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Handler", (_Recorder,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_an_http_answer_is_logged_up_to_1_mib_and_not_read_further(
    shared_kiok: Standalone, http_target: tuple[str, list[dict[str, Any]]]
) -> None:
    """The status decides; the body is logged up to 1 MiB and the rest never read (it used to
    be read whole into the worker's memory: this one never ends, so the task timed out)."""
    base, _ = http_target
    dag = shared_kiok.register(
        f"dag: {{id: exec_http_endless}}\ntasks:\n"
        f"  - {{id: get, type: http, timeout: 60s, config: {{url: '{base}/endless'}}}}\n"
    )
    run = shared_kiok.wait_run(shared_kiok.trigger(dag), 30)
    assert run["tasks"]["get"]["state"] == "SUCCESS", run["tasks"]["get"]
    log = shared_kiok.log(run["runId"], "get")
    assert log.count("z") == 1024 * 1024 and "\n[kiok] the rest of the answer is not logged" in log
    assert "[task] [kiok]" not in log  # kiok's own line, not the answer's


def test_http_tasks_success_failure_and_resolved_body(
    shared_kiok: Standalone, http_target: tuple[str, list[dict[str, Any]]]
) -> None:
    base, received = http_target
    dag = shared_kiok.register(
        f"""
dag: {{id: exec_http, params: {{x: default-x}}}}
tasks:
  - id: get_ok
    type: http
    config: {{url: "{base}/ok"}}
  - id: get_fail
    type: http
    config: {{url: "{base}/fail"}}
  - id: post_echo
    type: http
    config:
      url: "{base}/echo"
      method: POST
      body: '{{"x": "${{params.x}}"}}'
      headers: {{X-Test: hdr-value, Content-Type: application/json}}
"""
    )
    run_id = shared_kiok.trigger(dag, {"x": "resolved-from-args"})
    run = shared_kiok.wait_run(run_id, 20)
    tasks = run["tasks"]

    assert tasks["get_ok"]["state"] == "SUCCESS", tasks["get_ok"]
    assert "all-good-body" in shared_kiok.log(run_id, "get_ok")

    assert tasks["get_fail"]["state"] == "FAILED", tasks["get_fail"]
    assert "HTTP 500" in tasks["get_fail"]["error"]
    fail_log = shared_kiok.log(run_id, "get_fail")
    assert "kaput-body-from-server" in fail_log and "HTTP 500" in fail_log

    assert tasks["post_echo"]["state"] == "SUCCESS", tasks["post_echo"]
    posts = [r for r in received if r["path"] == "/echo"]
    assert len(posts) == 1
    assert posts[0]["method"] == "POST"
    assert json.loads(posts[0]["body"]) == {"x": "resolved-from-args"}
    assert posts[0]["x-test"] == "hdr-value"
    assert 'echo:{"x": "resolved-from-args"}' in shared_kiok.log(run_id, "post_echo")

    assert run["state"] == "FAILED"


def test_shell_and_python_success_and_failures(shared_kiok: Standalone) -> None:
    dag = shared_kiok.register(
        """
dag: {id: exec_fail}
tasks:
  - {id: sh_ok, script: 'echo shell-out; echo shell-err >&2'}
  - {id: sh_exit, script: 'echo before-exit; exit 3'}
  - {id: py_ok, type: python, script: 'import sys; print("py-out", sys.version_info[0])'}
  - id: py_raise
    type: python
    script: |
      print("about to raise")
      raise ValueError("boom")
"""
    )
    run_id = shared_kiok.trigger(dag)
    run = shared_kiok.wait_run(run_id, 20)
    tasks = run["tasks"]
    assert run["state"] == "FAILED"

    assert tasks["sh_ok"]["state"] == "SUCCESS" and tasks["sh_ok"]["exitCode"] == 0
    assert shared_kiok.log(run_id, "sh_ok") == "shell-out\nshell-err\n"
    assert tasks["py_ok"]["state"] == "SUCCESS" and tasks["py_ok"]["exitCode"] == 0
    assert shared_kiok.log(run_id, "py_ok") == "py-out 3\n"

    sh = tasks["sh_exit"]
    assert sh["state"] == "FAILED" and sh["exitCode"] == 3, sh
    assert "exit code 3" in sh["error"]
    assert shared_kiok.log(run_id, "sh_exit") == "before-exit\n"

    py = tasks["py_raise"]
    assert py["state"] == "FAILED" and py["exitCode"] == 1, py
    assert "ValueError: boom" in py["error"]
    py_log = shared_kiok.log(run_id, "py_raise")
    assert "about to raise" in py_log and "Traceback" in py_log and "ValueError: boom" in py_log


# --- trigger rules ---------------------------------------------------------------------------


def test_trigger_rules_skips_and_independent_branch(shared_kiok: Standalone) -> None:
    dag = shared_kiok.register(
        """
dag: {id: exec_rules}
tasks:
  - {id: bad, script: 'exit 1'}
  - {id: good, script: 'echo good'}
  - {id: slow, script: 'sleep 1; echo slow-done'}
  - {id: after_slow, requires: [slow], script: 'echo after-slow'}
  - {id: after_good, requires: [good], script: 'echo ok'}
  - {id: after_bad, requires: [bad], script: 'echo never'}
  - {id: after_after_bad, requires: [after_bad], script: 'echo never'}
  - {id: done_rule, requires: [bad, good], trigger_rule: all_done, script: 'echo all-done-ran'}
  - {id: one_failed_yes, requires: [bad, good], trigger_rule: one_failed, script: 'echo one-failed-ran'}
  - {id: one_failed_no, requires: [good], trigger_rule: one_failed, script: 'echo never'}
  - {id: all_failed_yes, requires: [bad], trigger_rule: all_failed, script: 'echo all-failed-ran'}
  - {id: all_failed_no, requires: [bad, good], trigger_rule: all_failed, script: 'echo never'}
"""
    )
    run_id = shared_kiok.trigger(dag)
    run = shared_kiok.wait_run(run_id, 20)
    states = {t: r["state"] for t, r in run["tasks"].items()}
    assert states == {
        "bad": "FAILED",
        "good": "SUCCESS",
        "slow": "SUCCESS",
        "after_slow": "SUCCESS",
        "after_good": "SUCCESS",
        "after_bad": "SKIPPED",
        "after_after_bad": "SKIPPED",
        "done_rule": "SUCCESS",
        "one_failed_yes": "SUCCESS",
        "one_failed_no": "SKIPPED",
        "all_failed_yes": "SUCCESS",
        "all_failed_no": "SKIPPED",
    }
    assert run["state"] == "FAILED"
    tasks = run["tasks"]
    # The independent branch kept running after the failure.
    assert ts(tasks["slow"]["endedAt"]) > ts(tasks["bad"]["endedAt"])
    assert ts(tasks["after_slow"]["startedAt"]) >= ts(tasks["slow"]["endedAt"])
    assert shared_kiok.log(run_id, "done_rule") == "all-done-ran\n"
    assert shared_kiok.log(run_id, "all_failed_yes") == "all-failed-ran\n"
    assert tasks["after_bad"]["startedAt"] is None and tasks["after_bad"]["attempt"] == 0
    run_log = shared_kiok.log(run_id, "__run__")
    assert "after_bad SKIPPED" in run_log and "run finished FAILED" in run_log


# --- retries ---------------------------------------------------------------------------------


def test_retries_with_exponential_backoff(shared_kiok: Standalone, task_tmp_path: Path) -> None:
    dag = shared_kiok.register(
        """
dag: {id: exec_retry, params: {dir: /nonexistent}}
tasks:
  - id: flaky
    retries: 3
    retry_delay: 250ms
    retry_exponential_backoff: true
    script: |
      date +%s.%N >> ${params.dir}/starts
      n=$(cat ${params.dir}/count 2>/dev/null || echo 0)
      n=$((n+1))
      echo $n > ${params.dir}/count
      echo "try $n env-attempt $KIOK_ATTEMPT files $(ls -A | wc -l)"
      touch left-behind
      [ "$n" -ge 3 ]
"""
    )
    run_id = shared_kiok.trigger(dag, {"dir": str(task_tmp_path)})
    # Watch the RETRYING phases: retryAt - endedAt is the delay chosen after that attempt.
    delays: dict[int, float] = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        run = shared_kiok.run(run_id)
        t = run["tasks"]["flaky"]
        if t["state"] == "RETRYING":
            assert t["waiting"].startswith(f"retry (attempt {t['attempt'] + 1}) at "), t
            delays[t["attempt"]] = ts(t["retryAt"]) - ts(t["endedAt"])
        if run["state"] in ("SUCCESS", "FAILED", "CANCELLED"):
            break
        time.sleep(0.02)
    t = run["tasks"]["flaky"]
    assert run["state"] == "SUCCESS", run
    assert t["state"] == "SUCCESS" and t["attempt"] == 3, t
    assert (task_tmp_path / "count").read_text().strip() == "3"

    log = shared_kiok.log(run_id, "flaky")
    lines = log.splitlines()
    assert len(lines) == 5, log
    assert lines[0].startswith("try 1 env-attempt 1 ")
    assert lines[1] == "[kiok] --- attempt 2 ---"
    assert lines[2].startswith("try 2 env-attempt 2 ")
    assert lines[3] == "[kiok] --- attempt 3 ---"
    assert lines[4].startswith("try 3 env-attempt 3 ")
    # every attempt starts in an empty working directory: what the last one left is gone
    assert [ln.rsplit(" files ", 1)[1] for ln in lines if ln.startswith("try ")] == ["0", "0", "0"]

    # Backoff: 250 ms after attempt 1, 500 ms after attempt 2 (exactly, as planned by kiok) ...
    assert delays, "never observed the task RETRYING"
    expected = {1: 0.25, 2: 0.5}
    for attempt, delay in delays.items():
        assert delay == pytest.approx(expected[attempt], abs=0.002), delays
    # ... and the attempts really started that far apart, the second gap the longer.
    s1, s2, s3 = (float(x) for x in (task_tmp_path / "starts").read_text().split())
    gap1, gap2 = s2 - s1, s3 - s2
    assert gap1 >= 0.25 and gap2 >= 0.5, (gap1, gap2)
    assert gap2 - gap1 >= 0.15, (gap1, gap2)
    run_log = shared_kiok.log(run_id, "__run__")
    assert "flaky attempt 1 RETRYING" in run_log and "flaky attempt 2 RETRYING" in run_log
    assert "retry at " in run_log and "flaky attempt 3 SUCCESS" in run_log


def test_retries_exhausted_end_failed(shared_kiok: Standalone) -> None:
    dag = shared_kiok.register(
        """
dag: {id: exec_retry_out}
tasks:
  - id: always
    retries: 1
    retry_delay: 100ms
    script: 'echo "attempt $KIOK_ATTEMPT"; echo "[kiok] --- attempt 9 ---"; exit 7'
  - {id: never, requires: [always], script: 'echo never'}
"""
    )
    run_id = shared_kiok.trigger(dag)
    run = shared_kiok.wait_run(run_id, 20)
    t = run["tasks"]["always"]
    assert run["state"] == "FAILED"
    assert t["state"] == "FAILED" and t["attempt"] == 2 and t["exitCode"] == 7, t
    assert t["retryAt"] is None
    assert run["tasks"]["never"]["state"] == "SKIPPED"
    # The attempts' separator is kiok's line: one the task prints cannot pass for it.
    forged = "[task] [kiok] --- attempt 9 ---\n"
    expected = f"attempt 1\n{forged}[kiok] --- attempt 2 ---\nattempt 2\n{forged}"
    assert shared_kiok.log(run_id, "always") == expected


def test_kiok_s_lines_start_their_own_line_after_output_that_did_not(shared_kiok: Standalone) -> None:
    """Found by the attack probe: an attempt whose output did not end its line had the next
    attempt's separator glued to it ("partial[kiok] --- attempt 2 ---"), a line that is the
    task's to every viewer; and a python task's last line, quoted in the run log's event,
    brought its escape sequences there (coloured as the background, every later event hid)."""
    dag = shared_kiok.register(
        """
dag: {id: exec_glue}
tasks:
  - {id: s, retries: 1, retry_delay: 100ms, script: 'printf partial; exit 1'}
  - id: p
    type: python
    script: 'import sys; print("Error: boom" + chr(27) + "[38;2;16;20;28m"); sys.exit(1)'
"""
    )
    run_id = shared_kiok.trigger(dag)
    assert shared_kiok.wait_run(run_id, 30)["state"] == "FAILED"
    assert shared_kiok.log(run_id, "s") == "partial\n[kiok] --- attempt 2 ---\npartial"
    run_log = shared_kiok.log(run_id, "__run__")
    assert "\x1b" not in run_log, run_log
    failed = next(line for line in run_log.splitlines() if " p attempt 1 FAILED" in line)
    assert "(Error: boom\\x1b[38;2;16;20;28m (exit code 1)" in failed, failed  # its escape shown, inert
    assert run_log.rstrip().endswith("run finished FAILED"), run_log


# --- timeouts --------------------------------------------------------------------------------


def test_task_timeout_and_dag_default_timeout(shared_kiok: Standalone) -> None:
    dag = shared_kiok.register(
        """
dag: {id: exec_timeout, default_timeout: 1s}
tasks:
  - {id: own_timeout, timeout: 1s, script: 'echo sleeping; sleep 30'}
  - {id: dag_default, script: 'sleep 30'}
  - {id: own_longer, timeout: 10s, script: 'sleep 1.5; echo survived'}
"""
    )
    began = time.monotonic()
    run_id = shared_kiok.trigger(dag)
    run = shared_kiok.wait_run(run_id, 20)
    assert time.monotonic() - began < 12
    tasks = run["tasks"]
    for tid in ("own_timeout", "dag_default"):
        t = tasks[tid]
        assert t["state"] == "FAILED", t
        assert "timed out" in t["error"], t
        assert ts(t["endedAt"]) - ts(t["startedAt"]) < 6, t
    assert "after 1s" in tasks["own_timeout"]["error"]
    assert "after 1s" in tasks["dag_default"]["error"]
    # a task's own timeout beats the DAG default
    assert tasks["own_longer"]["state"] == "SUCCESS", tasks["own_longer"]
    assert shared_kiok.log(run_id, "own_longer") == "survived\n"
    assert run["state"] == "FAILED"


def test_cluster_default_timeout_and_kill_grace(one_slot: Standalone) -> None:
    dag = one_slot.register(
        """
dag: {id: exec_timeout_cluster}
tasks:
  - {id: cluster_default, script: 'sleep 30'}
  - id: ignores_term
    timeout: 1s
    script: |
      trap 'echo got-term' TERM
      echo started
      while true; do sleep 0.1; done
"""
    )
    run_id = one_slot.trigger(dag)
    run = one_slot.wait_run(run_id, 20)
    tasks = run["tasks"]
    cd = tasks["cluster_default"]
    assert cd["state"] == "FAILED" and "timed out after 3s" in cd["error"], cd
    assert 2.5 <= ts(cd["endedAt"]) - ts(cd["startedAt"]) < 6, cd
    # SIGTERM is trapped, so only the SIGKILL after the 500 ms grace ends it.
    it = tasks["ignores_term"]
    assert it["state"] == "FAILED" and "timed out after 1s" in it["error"], it
    assert 1.3 <= ts(it["endedAt"]) - ts(it["startedAt"]) < 4, it
    assert "got-term" in one_slot.log(run_id, "ignores_term")


# --- placeholders and environment ------------------------------------------------------------


def test_placeholders_and_task_environment(shared_kiok: Standalone) -> None:
    dag = shared_kiok.register(
        """
dag: {id: exec_env, allow_extra_args: true, params: {x: dag-x, keep: dag-keep}}
tasks:
  - id: sh
    script: |
      echo "x=${params.x} keep=${params.keep} year=#{nowFormatted('yyyy')} home=${HOME:+set}"
      echo "run=$KIOK_RUN_ID task=$KIOK_TASK_ID attempt=$KIOK_ATTEMPT px=$KIOK_PARAM_X pk=$KIOK_PARAM_KEEP"
  - id: py
    type: python
    script: |
      import json, os
      print(json.dumps({k: v for k, v in os.environ.items() if k.startswith("KIOK_")}))
      print(json.dumps(sorted(os.environ.values())))
  - {id: unknown, script: 'echo ${params.nope}'}  # allow_extra_args: refused only at run time
"""
    )
    year_before = datetime.now(UTC).year
    run_id = shared_kiok.trigger(dag, {"x": "arg-x"})
    run = shared_kiok.wait_run(run_id, 20)
    year_after = datetime.now(UTC).year
    tasks = run["tasks"]
    assert tasks["sh"]["state"] == "SUCCESS" and tasks["py"]["state"] == "SUCCESS", tasks

    first, second = shared_kiok.log(run_id, "sh").splitlines()
    assert first in {f"x=arg-x keep=dag-keep year={y} home=set" for y in (year_before, year_after)}
    assert second == f"run={run_id} task=sh attempt=1 px=arg-x pk=dag-keep"

    env_line, values_line = shared_kiok.log(run_id, "py").splitlines()
    kiok_env = json.loads(env_line)
    assert kiok_env["KIOK_RUN_ID"] == run_id
    assert kiok_env["KIOK_TASK_ID"] == "py"
    assert kiok_env["KIOK_ATTEMPT"] == "1"
    assert kiok_env["KIOK_PARAM_X"] == "arg-x"
    assert kiok_env["KIOK_PARAM_KEEP"] == "dag-keep"
    # nothing of the kiok process's own KIOK_* settings leaks into tasks
    for leaked in (
        "KIOK_IAM_ADMIN_PASSWORD",
        "KIOK_BASE_DATA_DIR",
        "KIOK_MASTER_ADMIN_PORT",
        "KIOK_WORKER_TASK_SLOTS",
    ):
        assert leaked not in kiok_env
    allowed = set(TASK_VARIABLES)  # what kiok documents it sets, nothing of its own settings
    assert {k for k in kiok_env if not k.startswith("KIOK_PARAM_")} <= allowed, kiok_env
    assert ADMIN_PASSWORD not in json.loads(values_line)

    bad = tasks["unknown"]
    assert bad["state"] == "FAILED", bad
    assert "unknown param" in bad["error"] and "nope" in bad["error"], bad
    assert "nope" in shared_kiok.log(run_id, "unknown")
    assert run["state"] == "FAILED"


def test_tasks_do_not_inherit_the_credentials_kiok_itself_reads(standalone_factory: Any) -> None:
    """Found by the security probe (session 27): kiok's S3 client uses boto3's chain when no
    key is set, so the AWS credentials in the worker's environment are kiok's; every task
    inherited them (and could use kiok's archive and backup bucket). The trace exporter's
    headers likewise. What else the environment holds is still the tasks'."""
    node: Standalone = standalone_factory(
        "kiok",
        {
            "AWS_ACCESS_KEY_ID": "AKIAKIOKOPERATOR01",
            "AWS_SECRET_ACCESS_KEY": "opSecretKey/DoNotLeak+123",
            "AWS_SESSION_TOKEN": "session-token-of-kiok",
            "AWS_PROFILE": "kiok-profile",
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer collector-token",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://kiokuser:OtelEndpointPw123@collector.example/v1/traces",
            "SITE_SETTING_FOR_TASKS": "still-here",
        },
    )
    node.register("dag: {id: env_dump}\ntasks:\n  - {id: t, script: env}\n")
    run_id = node.trigger("env_dump")
    assert node.wait_run(run_id, 30)["state"] == "SUCCESS"
    seen = dict(line.split("=", 1) for line in node.log(run_id, "t").splitlines() if "=" in line)
    assert seen.get("SITE_SETTING_FOR_TASKS") == "still-here", seen
    leaked = {k for k in seen if k.startswith(("AWS_", "OTEL_EXPORTER_OTLP_"))}
    assert not leaked, leaked


# --- isolation: working directory and stdin --------------------------------------------------


def test_each_attempt_has_own_workdir_and_closed_stdin(shared_kiok: Standalone, task_tmp_path: Path) -> None:
    # a and b run at the same time and hand-shake through a directory outside both.
    dag = shared_kiok.register(
        """
dag: {id: exec_iso, params: {sync: /nonexistent}}
tasks:
  - id: a
    timeout: 8s
    script: |
      echo "cwd $(pwd)"
      echo mine > only_a.txt
      touch ${params.sync}/a_wrote
      i=0; while [ ! -e ${params.sync}/b_checked ] && [ $i -lt 150 ]; do sleep 0.05; i=$((i+1)); done
      [ -e ${params.sync}/b_checked ] && [ -e only_a.txt ] && echo a-still-has-file
  - id: b
    timeout: 8s
    script: |
      echo "cwd $(pwd)"
      i=0; while [ ! -e ${params.sync}/a_wrote ] && [ $i -lt 150 ]; do sleep 0.05; i=$((i+1)); done
      [ -e ${params.sync}/a_wrote ] || { echo a-never-wrote; exit 1; }
      if [ -e only_a.txt ]; then echo b-sees-a-file; else echo b-does-not-see; fi
      touch ${params.sync}/b_checked
  - id: stdin_sh
    timeout: 5s
    script: |
      read x; echo "read-rc=$? x=[$x]"
      cat; echo cat-done
  - id: stdin_py
    type: python
    timeout: 5s
    script: 'import sys; print("stdin=" + repr(sys.stdin.read()))'
"""
    )
    run_id = shared_kiok.trigger(dag, {"sync": str(task_tmp_path)})
    run = shared_kiok.wait_run(run_id, 20)
    tasks = run["tasks"]
    assert run["state"] == "SUCCESS", tasks

    a_log, b_log = shared_kiok.log(run_id, "a"), shared_kiok.log(run_id, "b")
    a_cwd, b_cwd = a_log.splitlines()[0], b_log.splitlines()[0]
    assert a_cwd.startswith("cwd /") and b_cwd.startswith("cwd /")
    assert a_cwd != b_cwd
    assert "a-still-has-file" in a_log
    assert "b-does-not-see" in b_log

    assert shared_kiok.log(run_id, "stdin_sh") == "read-rc=1 x=[]\ncat-done\n"
    assert shared_kiok.log(run_id, "stdin_py") == "stdin=''\n"
    for tid in ("stdin_sh", "stdin_py"):
        t = tasks[tid]
        assert ts(t["endedAt"]) - ts(t["startedAt"]) < 3, t


# --- cancel ----------------------------------------------------------------------------------


def processes_with(needle: str) -> list[int]:
    """Pids (as this test sees them) whose command line contains ``needle``. A pid a task
    reports is its own pid namespace's (isolated tasks: ``kiok.worker.isolation``)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, UnicodeDecodeError):
                continue
            if needle in cmdline and pid_alive(int(entry)):
                found.append(int(entry))
    return found


def test_cancel_kills_process_group_and_cancels_pending(shared_kiok: Standalone) -> None:
    seconds = f"300.{time.time_ns() % 10**9}"  # marks the task's child among all processes
    dag = shared_kiok.register(
        """
dag: {id: exec_cancel, params: {seconds: "1"}}
tasks:
  - {id: bg, script: 'sleep ${params.seconds} >/dev/null 2>&1 & wait'}
  - {id: downstream, requires: [bg], script: 'echo never'}
"""
    )
    run_id = shared_kiok.trigger(dag, {"seconds": seconds})
    [child] = shared_kiok.wait_for(
        lambda: (
            shared_kiok.run(run_id)["tasks"]["bg"]["state"] == "RUNNING"
            and processes_with(f"sleep {seconds}")
        ),
        15,
        "bg running with its child",
    )
    try:
        r = shared_kiok.api("POST", f"/api/v1/runs/{run_id}/cancel")
        assert r.status_code == 200, r.text
        assert r.json()["cancelRequested"] is True

        run = shared_kiok.wait_run(run_id, 15)
        assert run["state"] == "CANCELLED", run
        assert run["cancelRequested"] is True
        assert run["tasks"]["bg"]["state"] == "CANCELLED", run["tasks"]["bg"]
        assert run["tasks"]["downstream"]["state"] == "CANCELLED", run["tasks"]["downstream"]
        assert run["tasks"]["downstream"]["startedAt"] is None
        shared_kiok.wait_for(lambda: not pid_alive(child), 5, f"background child {child} to die")
        assert "cancel" in shared_kiok.log(run_id, "__run__")
    finally:
        if pid_alive(child):  # do not leave it behind when the test fails
            os.kill(child, signal.SIGKILL)

    # A finished run cannot be cancelled.
    done_dag = shared_kiok.register("dag: {id: exec_cancel_done}\ntasks:\n  - {id: t, script: 'true'}\n")
    done_id = shared_kiok.trigger(done_dag)
    assert shared_kiok.wait_run(done_id, 15)["state"] == "SUCCESS"
    r = shared_kiok.api("POST", f"/api/v1/runs/{done_id}/cancel")
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert set(err) >= {"code", "message"} and isinstance(err["code"], str) and err["code"]
    assert "SUCCESS" in err["message"]
    assert shared_kiok.run(done_id)["state"] == "SUCCESS"

    r = shared_kiok.api("POST", "/api/v1/runs/no-such-run-123/cancel")
    assert r.status_code == 404, r.text
    assert "message" in r.json()["error"]


def test_cancel_pending_run(shared_kiok: Standalone, task_tmp_path: Path) -> None:
    go = task_tmp_path / "go"
    dag = shared_kiok.register(
        """
dag: {id: exec_cancel_pending, max_active_runs: 1, params: {go: /nonexistent}}
tasks:
  - {id: hold, timeout: 20s, script: 'while [ ! -e ${params.go} ]; do sleep 0.05; done'}
  - {id: next, requires: [hold], script: 'echo next'}
"""
    )
    first = shared_kiok.trigger(dag, {"go": str(go)})
    shared_kiok.wait_for(
        lambda: shared_kiok.run(first)["tasks"]["hold"]["state"] == "RUNNING", 15, "first running"
    )
    second = shared_kiok.trigger(dag, {"go": str(go)})
    shared_kiok.wait_for(lambda: shared_kiok.run(second)["waiting"], 10, "second run waiting")
    assert shared_kiok.run(second)["state"] == "PENDING"

    r = shared_kiok.api("POST", f"/api/v1/runs/{second}/cancel")
    assert r.status_code == 200, r.text
    run = shared_kiok.wait_run(second, 10)
    assert run["state"] == "CANCELLED"
    assert {t: x["state"] for t, x in run["tasks"].items()} == {"hold": "CANCELLED", "next": "CANCELLED"}
    assert all(x["startedAt"] is None for x in run["tasks"].values())
    # the other run is untouched
    assert shared_kiok.run(first)["state"] == "RUNNING"
    go.touch()
    assert shared_kiok.wait_run(first, 15)["state"] == "SUCCESS"


def test_cancel_cancels_queued_tasks(one_slot: Standalone) -> None:
    dag = one_slot.register(
        """
dag: {id: exec_cancel_queued}
tasks:
  - {id: first, script: 'sleep 30'}
  - {id: second, script: 'sleep 30'}
"""
    )
    run_id = one_slot.trigger(dag)

    def one_running_one_queued() -> dict[str, Any] | None:
        tasks: dict[str, Any] = one_slot.run(run_id)["tasks"]
        states = sorted(t["state"] for t in tasks.values())
        return tasks if states == ["QUEUED", "RUNNING"] else None

    tasks = one_slot.wait_for(one_running_one_queued, 15, "one task running, one queued")
    queued = next(t for t, r in tasks.items() if r["state"] == "QUEUED")
    r = one_slot.api("POST", f"/api/v1/runs/{run_id}/cancel")
    assert r.status_code == 200, r.text
    run = one_slot.wait_run(run_id, 15)
    assert run["state"] == "CANCELLED"
    assert {t: r["state"] for t, r in run["tasks"].items()} == {"first": "CANCELLED", "second": "CANCELLED"}
    assert run["tasks"][queued]["startedAt"] is None and run["tasks"][queued]["attempt"] == 0


# --- task slots ------------------------------------------------------------------------------


def test_single_slot_serialises_independent_tasks(one_slot: Standalone) -> None:
    dag = one_slot.register(
        """
dag: {id: exec_slots}
tasks:
  - {id: p, script: 'sleep 1'}
  - {id: q, script: 'sleep 1'}
"""
    )
    run_id = one_slot.trigger(dag)

    def queued_behind_running() -> dict[str, Any] | None:
        tasks: dict[str, Any] = one_slot.run(run_id)["tasks"]
        states = sorted(t["state"] for t in tasks.values())
        return tasks if states == ["QUEUED", "RUNNING"] else None

    tasks = one_slot.wait_for(queued_behind_running, 15, "one task running while the other is queued")
    queued = next(r for r in tasks.values() if r["state"] == "QUEUED")
    assert queued["waiting"] == "waiting for a free task slot"
    running = next(r for r in tasks.values() if r["state"] == "RUNNING")
    assert running["waiting"] is None

    run = one_slot.wait_run(run_id, 15)
    assert run["state"] == "SUCCESS"
    first, second = sorted(run["tasks"].values(), key=lambda r: ts(r["startedAt"]))
    assert ts(first["endedAt"]) <= ts(second["startedAt"]), run["tasks"]
    assert ts(first["endedAt"]) - ts(first["startedAt"]) >= 0.9
