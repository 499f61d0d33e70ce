"""Retention on a real standalone: a DAG's ``retention`` (seconds here) makes the leader's
sweep delete its finished runs with their logs, never a running one, and leaves other DAGs'
runs alone; ``DELETE /api/v1/runs/{id}`` deletes one finished run (409 while it runs, 404
after); on three masters every one deletes the same runs and logs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from kiok.store import joblog
from kiok.store.kv import RocksKV
from kiok.testing.process import MasterGroup, Standalone, WorkerProcess, store_digest


def gated(dag_id: str, gate: Path, retention: str | None = None) -> str:
    extra = f", retention: {retention}" if retention else ""
    return (
        f"dag: {{id: {dag_id}{extra}}}\n"
        "tasks:\n"
        f"  - {{id: t, script: 'while [ ! -e {gate} ]; do sleep 0.05; done; echo done {dag_id}'}}\n"
    )


def gone(node: Standalone, run_id: str) -> bool:
    return node.api("GET", f"/api/v1/runs/{run_id}").status_code == 404


def test_the_sweep_deletes_old_finished_runs_and_their_logs_and_never_running_ones(
    standalone_factory: Any, task_tmp_path: Path
) -> None:
    node: Standalone = standalone_factory(env={"KIOK_RETENTION_SWEEP_INTERVAL_MS": "200"})
    open_gate, gate = task_tmp_path / "open", task_tmp_path / "gate"
    open_gate.touch()
    node.register(gated("brief", open_gate, retention="2s"))
    node.register(gated("held", gate, retention="2s"))
    node.register(gated("kept", open_gate))
    finished = node.trigger("brief")
    assert node.wait_run(finished, 20)["state"] == "SUCCESS"
    assert node.log(finished, "t") == "done brief\n"
    running = node.trigger("held")
    node.wait_run(running, 20, states=("RUNNING",))
    kept = node.trigger("kept")
    assert node.wait_run(kept, 20)["state"] == "SUCCESS"

    node.wait_for(lambda: gone(node, finished), 30, "the finished run to be deleted")
    r = node.api("GET", f"/api/v1/runs/{finished}/tasks/t/log")
    assert r.status_code == 404, r.text
    assert finished not in {run["runId"] for run in node.api("GET", "/api/v1/runs").json()["runs"]}
    # Older than its retention by now, but still running: kept, and it finishes normally.
    assert node.run(running)["state"] == "RUNNING"
    gate.touch()
    assert node.wait_run(running, 20)["state"] == "SUCCESS"
    node.wait_for(lambda: gone(node, running), 30, "the run to be deleted once finished")
    # Without a retention (and none configured) runs are kept forever.
    assert node.run(kept)["state"] == "SUCCESS" and node.log(kept, "t") == "done kept\n"


def test_a_run_whose_logs_were_purged_says_when(standalone_factory: Any) -> None:
    """Log retention (here under 3 s) keeps the run but deletes its logs; the run then
    says when, as ``logsPurgedAt``, in the read and in the list, and its version moved on."""
    node: Standalone = standalone_factory(
        env={"KIOK_RETENTION_SWEEP_INTERVAL_MS": "200", "KIOK_RETENTION_LOGS_DAYS": "0.00003"}
    )
    node.register("dag: {id: chatty}\ntasks:\n  - {id: t, script: 'echo said'}\n")
    run_id = node.trigger("chatty")
    ended = node.wait_run(run_id, 20)
    assert ended["state"] == "SUCCESS" and ended["logsPurgedAt"] is None, ended
    run = node.wait_for(lambda: (r := node.run(run_id))["logsPurgedAt"] and r, 30, "the logs to be purged")
    purged = datetime.fromisoformat(run["logsPurgedAt"])
    assert run["logsPurgedAt"].endswith("Z") and purged >= datetime.fromisoformat(run["endedAt"]), run
    assert run["version"] > ended["version"] and run["state"] == "SUCCESS", run
    assert node.log(run_id, "t") == ""
    [listed] = node.api("GET", "/api/v1/runs", params={"dag": "chatty"}).json()["runs"]
    assert listed["logsPurgedAt"] == run["logsPurgedAt"], listed


def test_audit_records_past_their_retention_are_deleted(standalone_factory: Any) -> None:
    """``kiok.retention.audit.days`` (here ~2 s): the records of a first pause go, those of a
    later one stay until they are as old."""
    node: Standalone = standalone_factory(
        env={"KIOK_RETENTION_SWEEP_INTERVAL_MS": "200", "KIOK_RETENTION_AUDIT_DAYS": "0.000025"}
    )
    node.register("dag: {id: audited}\ntasks:\n  - {id: t, script: 'true'}\n")

    def targets() -> list[str]:
        entries = node.api("GET", "/api/v1/admin/audit?action=dags:Pause").json()["entries"]
        return [e["detail"] for e in entries]

    assert node.api("POST", "/api/v1/dags/audited/pause").status_code == 200
    node.wait_for(lambda: targets() == ["paused"], 10, "the pause to be audited")
    node.wait_for(lambda: targets() == [], 30, "the pause's record to pass its retention")
    assert node.api("POST", "/api/v1/dags/audited/unpause").status_code == 200
    node.wait_for(lambda: targets() == ["unpaused"], 10, "the later record, kept while younger")


def test_delete_one_run(standalone_factory: Any, task_tmp_path: Path) -> None:
    node: Standalone = standalone_factory()
    gate = task_tmp_path / "gate"
    node.register(gated("one", gate))
    run_id = node.trigger("one")
    node.wait_run(run_id, 20, states=("RUNNING",))
    r = node.api("DELETE", f"/api/v1/runs/{run_id}")
    assert r.status_code == 409 and "only a finished run" in r.json()["error"]["message"], r.text
    gate.touch()
    assert node.wait_run(run_id, 20)["state"] == "SUCCESS"
    r = node.api("DELETE", f"/api/v1/runs/{run_id}")
    assert r.status_code == 200 and r.json() == {"deleted": run_id}, r.text
    assert gone(node, run_id)
    assert node.api("GET", f"/api/v1/runs/{run_id}/tasks/__run__/log").status_code == 404
    assert node.api("DELETE", f"/api/v1/runs/{run_id}").status_code == 404
    assert node.api("DELETE", "/api/v1/runs/one-0-999").status_code == 404
    assert node.api("GET", "/api/v1/runs", params={"dag": "one"}).json()["runs"] == []
    # What it destroyed is gone for good: who did it is in the audit log, once.
    entries = node.api("GET", "/api/v1/admin/audit").json()["entries"]
    deletes = [(e["actor"], e["success"]) for e in entries if e["action"] == "runs:Delete"]
    assert deletes == [("admin", True)], entries[:5]


@pytest.mark.slow
def test_every_master_deletes_the_same_runs_and_logs(tmp_path: Path) -> None:
    fast = {"KIOK_WORKER_HEARTBEAT_TIMEOUT_MS": "3000", "KIOK_WORKER_HEARTBEAT_INTERVAL_MS": "300"}
    group = MasterGroup(tmp_path, extra_env={**fast, "KIOK_RETENTION_SWEEP_INTERVAL_MS": "200"})
    worker: WorkerProcess | None = None
    try:
        group.start()
        leader = group.leader()
        worker = WorkerProcess(
            tmp_path / "w1",
            group.workers_address,
            "w1",
            {**fast, "KIOK_WORKER_JOIN_TOKEN": leader.join_token()},
        )
        worker.start()
        leader.wait_open()
        leader.register("dag: {id: brief, retention: 1s}\ntasks:\n  - {id: t, script: 'echo bye'}\n")
        leader.register("dag: {id: kept}\ntasks:\n  - {id: t, script: 'echo hi'}\n")
        brief, kept = leader.trigger("brief"), leader.trigger("kept")
        assert leader.wait_run(brief, 30)["state"] == "SUCCESS"
        assert leader.wait_run(kept, 30)["state"] == "SUCCESS"
        for m in group.masters.values():
            m.wait_for(lambda m=m: gone(m, brief), 30, "the run to be deleted on every master")
            assert m.log(kept, "t") == "hi\n"
        worker.stop()
        group.settle()
        group.stop_quietly()
        for m in group.masters.values():
            logs = RocksKV(m.data_dir / "joblog", joblog.SPACES)
            try:
                assert list(logs.scan(joblog.LOGS, f"{brief}\x00".encode())) == []
                assert list(logs.scan(joblog.LOGS, f"{kept}\x00".encode())) != []
            finally:
                logs.close()
        digests = {store_digest(m.data_dir, MasterGroup.MASTER_KEY) for m in group.masters.values()}
        assert len(digests) == 1
    finally:
        if worker is not None:
            worker.stop()
        group.stop()
