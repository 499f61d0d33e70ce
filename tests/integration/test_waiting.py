"""Why runs and tasks wait, as GET /api/v1/runs/{id} explains it: upstream tasks, retries,
max_active_runs and paused DAGs. Real ``kiok standalone``, no mocks."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from kiok.testing.process import Standalone


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def task(node: Standalone, run_id: str, task_id: str) -> dict[str, Any]:
    t: dict[str, Any] = node.run(run_id)["tasks"][task_id]
    return t


def test_waiting_for_upstream(shared_kiok: Standalone, task_tmp_path: Path) -> None:
    go = task_tmp_path / "go"
    dag = shared_kiok.register(
        """
dag: {id: wait_upstream, params: {go: /nonexistent}}
tasks:
  - {id: a, timeout: 20s, script: 'while [ ! -e ${params.go} ]; do sleep 0.05; done'}
  - {id: b, requires: [a], script: 'echo b'}
  - {id: c, requires: [a, b], script: 'echo c'}
"""
    )
    run_id = shared_kiok.trigger(dag, {"go": str(go)})
    shared_kiok.wait_for(lambda: task(shared_kiok, run_id, "a")["state"] == "RUNNING", 15, "a running")
    run = shared_kiok.run(run_id)
    assert run["state"] == "RUNNING"
    assert run["tasks"]["a"]["waiting"] is None
    assert run["tasks"]["b"]["state"] == "PENDING"
    assert run["tasks"]["b"]["waiting"] == "waiting for upstream: a"
    assert run["tasks"]["c"]["waiting"] == "waiting for upstream: a, b"

    go.touch()
    run = shared_kiok.wait_run(run_id, 15)
    assert run["state"] == "SUCCESS"
    assert all(t["waiting"] is None for t in run["tasks"].values()), run["tasks"]


def test_retrying_task_says_when_it_retries(shared_kiok: Standalone, task_tmp_path: Path) -> None:
    dag = shared_kiok.register(
        """
dag: {id: wait_retry, params: {dir: /nonexistent}}
tasks:
  - id: flaky
    retries: 1
    retry_delay: 2s
    script: |
      if [ -e ${params.dir}/failed_once ]; then echo second; else touch ${params.dir}/failed_once; exit 1; fi
  - {id: after, requires: [flaky], script: 'echo after'}
"""
    )
    run_id = shared_kiok.trigger(dag, {"dir": str(task_tmp_path)})
    t = shared_kiok.wait_for(
        lambda: (x := task(shared_kiok, run_id, "flaky"))["state"] == "RETRYING" and x, 15, "flaky RETRYING"
    )
    assert t["attempt"] == 1
    assert t["retryAt"] is not None
    assert abs(ts(t["retryAt"]) - ts(t["endedAt"]) - 2.0) < 0.01, t
    assert t["waiting"].startswith("retry (attempt 2) at "), t
    # the time in the reason is retryAt, to the second
    assert t["waiting"].split(" at ", 1)[1].startswith(t["retryAt"][:19]), t
    assert task(shared_kiok, run_id, "after")["waiting"] == "waiting for upstream: flaky"

    run = shared_kiok.wait_run(run_id, 15)
    assert run["state"] == "SUCCESS"
    assert run["tasks"]["flaky"]["attempt"] == 2 and run["tasks"]["flaky"]["retryAt"] is None


def test_max_active_runs_then_paused(shared_kiok: Standalone, task_tmp_path: Path) -> None:
    go = task_tmp_path / "go"
    dag = shared_kiok.register(
        """
dag: {id: wait_mar, max_active_runs: 1, params: {go: /nonexistent}}
tasks:
  - {id: hold, timeout: 30s, script: 'while [ ! -e ${params.go} ]; do sleep 0.05; done'}
"""
    )
    first = shared_kiok.trigger(dag, {"go": str(go)})
    shared_kiok.wait_for(
        lambda: task(shared_kiok, first, "hold")["state"] == "RUNNING", 15, "first run's task running"
    )
    second = shared_kiok.trigger(dag, {"go": str(go)})
    run = shared_kiok.wait_for(
        lambda: (r := shared_kiok.run(second))["waiting"] and r, 10, "second run to explain why it waits"
    )
    assert run["state"] == "PENDING"
    assert "max_active_runs" in run["waiting"], run
    assert run["tasks"]["hold"]["state"] == "PENDING"
    assert "max_active_runs" in run["tasks"]["hold"]["waiting"], run["tasks"]["hold"]

    try:
        r = shared_kiok.api("POST", f"/api/v1/dags/{dag}/pause")
        assert r.status_code == 200, r.text
        run = shared_kiok.wait_for(
            lambda: "paused" in ((x := shared_kiok.run(second))["waiting"] or "") and x,
            10,
            "second run waiting on pause",
        )
        assert run["state"] == "PENDING"
        assert "paused" in run["tasks"]["hold"]["waiting"], run["tasks"]["hold"]

        r = shared_kiok.api("POST", f"/api/v1/dags/{dag}/runs", json={"args": {}})
        assert r.status_code == 409, r.text
        err = r.json()["error"]
        assert isinstance(err["code"], str) and err["code"]
        assert "paused" in err["message"], err

        # Paused: even with the first run gone, the second does not start.
        go.touch()
        assert shared_kiok.wait_run(first, 15)["state"] == "SUCCESS"
        stay_until = time.monotonic() + 0.5
        while time.monotonic() < stay_until:
            run = shared_kiok.run(second)
            assert run["state"] == "PENDING" and "paused" in run["waiting"], run
            time.sleep(0.05)
    finally:
        r = shared_kiok.api("POST", f"/api/v1/dags/{dag}/unpause")
        assert r.status_code == 200, r.text
    run = shared_kiok.wait_run(second, 15)
    assert run["state"] == "SUCCESS"
    assert run["waiting"] is None
