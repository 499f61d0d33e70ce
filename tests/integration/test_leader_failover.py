"""Issue 14: kill -9 of the leader while a run's driver is alive and busy. The driver keeps
its run (same fence) through the new leader's reconnect window; no task that succeeded runs
again; every task's log and every run-log line written before the failover is stored; and
the run never stalls longer than the heartbeat timeout (+2 s)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from kiok.testing.process import Master, MasterGroup

pytestmark = pytest.mark.slow

TIMEOUT_MS = 3000
FAST = {"KIOK_WORKER_HEARTBEAT_TIMEOUT_MS": str(TIMEOUT_MS), "KIOK_WORKER_HEARTBEAT_INTERVAL_MS": "300"}
TASKS = [f"t{i}" for i in range(1, 13)]


@pytest.fixture
def group(tmp_path: Path) -> Iterator[MasterGroup]:
    g = MasterGroup(tmp_path, extra_env=FAST)
    yield g
    g.stop()


def chain_dag(ledger: Path) -> str:
    """Twelve sequential tasks; each appends (task, attempt) to a ledger and prints two lines,
    the second after a short sleep."""
    lines = ["dag: {id: chain}", "tasks:"]
    previous = None
    for tid in TASKS:
        requires = f", requires: [{previous}]" if previous else ""
        script = (
            f'echo "$KIOK_TASK_ID $KIOK_ATTEMPT" >> {ledger}; echo "begin $KIOK_TASK_ID"; '
            f'sleep 0.4; echo "end $KIOK_TASK_ID"'
        )
        lines.append(f"  - {{id: {tid}{requires}, script: '{script}'}}")
        previous = tid
    return "\n".join(lines) + "\n"


def _ended(m: Master, run_id: str) -> dict[str, object] | None:
    """The run once it ended; None before, or while the new leader waits for a worker (503)."""
    r = m.api("GET", f"/api/v1/runs/{run_id}")
    if r.status_code != 200:
        return None
    run: dict[str, object] = r.json()
    return run if run["state"] in ("SUCCESS", "FAILED", "CANCELLED") else None


def _ms(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_a_live_driver_keeps_its_run_and_logs_through_a_leader_kill(
    tmp_path: Path, group: MasterGroup, task_tmp_path: Path
) -> None:
    group.start()
    leader = group.leader()
    workers = [group.add_worker(leader, wid) for wid in ("w1", "w2")]
    ledger = task_tmp_path / "ledger"
    try:
        leader.wait_open()
        leader.register(chain_dag(ledger))
        run_id = leader.trigger("chain")
        leader.wait_for(
            lambda: leader.run(run_id)["tasks"].get("t4", {}).get("state") == "RUNNING", 30, "t4 to run"
        )
        driver = leader.run(run_id)["worker"]
        leader_id = next(mid for mid, m in group.masters.items() if m is leader)
        leader.kill9()
        new_leader = group.leader(exclude=leader_id)
        run = new_leader.wait_for(lambda: _ended(new_leader, run_id), 60, "the run to end")
        assert run["state"] == "SUCCESS", run
        run = new_leader.run(run_id)
        # The driver was alive: it kept its run, nothing ran twice or on another worker.
        assert run["worker"] == driver
        assert {t: (r["state"], r["attempt"], r["worker"]) for t, r in run["tasks"].items()} == {
            t: ("SUCCESS", 1, driver) for t in TASKS
        }
        assert sorted(ledger.read_text().splitlines()) == sorted(f"{t} 1" for t in TASKS)
        # No stall: each task starts soon after its upstream ended.
        gaps = {
            down: _ms(run["tasks"][down]["startedAt"]) - _ms(run["tasks"][up]["endedAt"])
            for up, down in itertools.pairwise(TASKS)
        }
        print(
            "longest gap between tasks:",
            max(gaps.values()),
            "s; task durations:",
            [round(_ms(r["endedAt"]) - _ms(r["startedAt"]), 2) for r in run["tasks"].values()],
        )
        assert max(gaps.values()) <= TIMEOUT_MS / 1000 + 2, gaps
        group.settle()
        for m in group.followers(leader):
            for t in TASKS:  # every byte each task wrote is stored, once, on every survivor
                assert m.log(run_id, t) == f"begin {t}\nend {t}\n", (m.data_dir.name, t)
            runlog = m.log(run_id, "__run__")
            for t in TASKS:
                assert runlog.count(f"{t} attempt 1 started") == 1, runlog
                assert runlog.count(f"{t} attempt 1 SUCCESS") == 1, runlog
            assert "run finished SUCCESS" in runlog
        for w in workers:  # an ordinary disconnect is not an error with a traceback
            text = w.read_log()
            assert "Traceback" not in text and "exception was never retrieved" not in text, text[-3000:]
        for m in group.followers(leader):
            text = m.read_log()
            assert "Traceback" not in text and "exception was never retrieved" not in text, text[-3000:]
    finally:
        for w in workers:
            w.stop()
