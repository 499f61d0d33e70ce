"""Maintenance mode and retention against a real master node (RocksDB state and job-log
stores) on a manual clock: cron firings inside a maintenance window are skipped for good
(even with catchup), pending runs wait with a reason, and the retention sweep deletes old
finished runs with everything they own, or only their logs, in batches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kiok.config import Settings
from kiok.core.states import TaskRecord, TaskState
from kiok.master.node import MasterNode
from kiok.store import commands as c
from kiok.store import joblog, keys

HOUR = 3_600_000
DAY = 24 * HOUR


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)


NodeFactory = Callable[..., Any]


@pytest.fixture
async def make_node(tmp_path: Path) -> AsyncIterator[NodeFactory]:
    nodes: list[MasterNode] = []

    async def make(**overrides: Any) -> tuple[MasterNode, Clock]:
        clock = Clock(ms("2026-03-28T12:00:00+00:00"))
        settings = Settings.load(overrides={"kiok.base.data.dir": str(tmp_path), **overrides})
        n = MasterNode(settings, clock)
        nodes.append(n)
        await n.open_stores()
        await n.auth.bootstrap("admin", "Some-Password-1")
        return n, clock

    yield make
    for n in nodes:
        n.kv.close()
        n.joblog.close()


def cron_spec(dag_id: str, *, catchup: bool) -> dict[str, Any]:
    return {
        "dag": {"id": dag_id, "schedule": "* * * * *", "catchup": catchup, "max_active_runs": 100},
        "tasks": [{"id": "t", "type": "shell", "script": "true"}],
    }


def scheduled(n: MasterNode, dag_id: str) -> list[int]:
    return sorted(r["scheduledMs"] for r in n.reader.runs(dag_id=dag_id, limit=500)[0])


@pytest.mark.parametrize("catchup", [True, False])
async def test_firings_inside_a_maintenance_window_are_skipped_for_good(
    make_node: NodeFactory, catchup: bool, caplog: pytest.LogCaptureFixture
) -> None:
    n, clock = await make_node()
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=cron_spec("tick", catchup=catchup)))
    clock.ms = ms("2026-03-28T12:00:30+00:00")
    await n.log.propose(c.SetMaintenance(at_ms=clock(), enabled=True, by="admin"))
    clock.ms = ms("2026-03-28T12:03:10+00:00")
    with caplog.at_level(logging.WARNING, logger="kiok.master.scheduler"):
        await n.scheduler.tick()
    assert scheduled(n, "tick") == []
    assert "3 cron firing(s) from 2026-03-28T12:01:00" in caplog.text and "maintenance mode" in caplog.text
    # 12:04 falls due while maintenance is still on, but the scheduler does not look again
    # until after it ends: the window still skips it.
    clock.ms = ms("2026-03-28T12:04:30+00:00")
    await n.log.propose(c.SetMaintenance(at_ms=clock(), enabled=False, by="admin"))
    clock.ms = ms("2026-03-28T12:06:10+00:00")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kiok.master.scheduler"):
        await n.scheduler.tick()
    fired = scheduled(n, "tick")
    if catchup:
        assert fired == [ms("2026-03-28T12:05:00+00:00"), ms("2026-03-28T12:06:00+00:00")]
        assert "1 cron firing(s) from 2026-03-28T12:04:00" in caplog.text
    else:  # only the latest interval runs anyway
        assert fired == [ms("2026-03-28T12:06:00+00:00")]


async def test_pending_runs_wait_in_maintenance_with_a_reason(make_node: NodeFactory) -> None:
    n, clock = await make_node()
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=cron_spec("d", catchup=False)))
    run_id = (await n.log.propose(c.CreateRun(at_ms=clock(), dag_id="d")))["runId"]
    await n.log.propose(c.SetMaintenance(at_ms=clock(), enabled=True))
    await n.coordinator.dispatch_pass()
    assert "maintenance mode" in n.coordinator.waiting[run_id]
    await n.log.propose(c.SetMaintenance(at_ms=clock(), enabled=False))
    await n.coordinator.dispatch_pass()
    assert n.coordinator.waiting[run_id] == "no worker is connected"


def done(state: TaskState, at: int) -> dict[str, Any]:
    return TaskRecord(state=state, attempt=1, worker="w1", started_at_ms=at, ended_at_ms=at).to_dict()


async def make_run(n: MasterNode, clock: Clock, dag_id: str, *, finish: bool = True, log: bytes = b"") -> str:
    run_id: str = (await n.log.propose(c.CreateRun(at_ms=clock(), dag_id=dag_id)))["runId"]
    fence = await n.log.propose(c.AssignRun(at_ms=clock(), run_id=run_id, worker="w1", term=1))
    n.joblog.append(run_id, "t", log or f"output of {run_id}\n".encode())
    n.joblog.append(run_id, "__run__", b"assigned\n")
    if finish:
        await n.log.propose(
            c.ReportTasks(
                at_ms=clock(),
                run_id=run_id,
                term=1,
                epoch=fence["epoch"],
                tasks={"t": done(TaskState.SUCCESS, clock())},
                worker="w1",
            )
        )
    return run_id


def simple_spec(dag_id: str, retention: str | None = None) -> dict[str, Any]:
    dag: dict[str, Any] = {"id": dag_id, "max_active_runs": 100}
    if retention is not None:
        dag["retention"] = retention
    return {"dag": dag, "tasks": [{"id": "t", "type": "shell", "script": "true"}]}


def state_keys_naming(n: MasterNode, run_id: str) -> list[bytes]:
    found = []
    for space in keys.SPACES:
        for key, value in n.kv.scan(space, b""):
            if run_id.encode() in key or run_id.encode() in value:
                found.append(key)
    return found


def log_keys_of(n: MasterNode, run_id: str) -> list[bytes]:
    return [k for k, _ in n._joblog_kv.scan(joblog.LOGS, f"{run_id}\x00".encode())]


async def test_the_sweep_deletes_old_finished_runs_with_their_logs_in_batches(make_node: NodeFactory) -> None:
    n, clock = await make_node(**{"kiok.retention.runs.days": 2.0, "kiok.retention.sweep.batch.runs": 2})
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=simple_spec("d")))
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=simple_spec("short", retention="1h")))
    old = [await make_run(n, clock, "d") for _ in range(5)]
    still_running = await make_run(n, clock, "d", finish=False)
    short_lived = await make_run(n, clock, "short")
    clock.ms += 2 * HOUR
    recent_short = await make_run(n, clock, "short")
    # A DAG's own retention replaces the global one: its 2 h old run goes, its new one stays.
    assert await n.retention.sweep() == (1, 0)
    assert n.reader.run(short_lived) is None and n.reader.run(recent_short) is not None
    clock.ms += 2 * DAY
    recent = await make_run(n, clock, "d")
    assert await n.retention.sweep() == (6, 0)
    for run_id in [*old, short_lived, recent_short]:
        assert n.reader.run(run_id) is None
        assert state_keys_naming(n, run_id) == []
        assert log_keys_of(n, run_id) == [] and n.joblog.size(run_id, "t") == 0
    for run_id in (still_running, recent):
        assert n.reader.run(run_id) is not None and log_keys_of(n, run_id) != []
    assert [r["runId"] for r in n.reader.runs(dag_id="d")[0]] == [recent, still_running]


async def test_log_retention_drops_logs_and_keeps_the_run(make_node: NodeFactory) -> None:
    n, clock = await make_node(**{"kiok.retention.logs.days": 0.5, "kiok.retention.sweep.batch.runs": 1})
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=simple_spec("d")))
    old = [await make_run(n, clock, "d") for _ in range(3)]
    clock.ms += 13 * HOUR
    recent = await make_run(n, clock, "d")
    assert await n.retention.sweep() == (0, 3)
    for run_id in old:
        run = n.reader.run(run_id)
        assert run is not None and run["state"] == "SUCCESS" and run["logsPurgedMs"] == clock()
        assert log_keys_of(n, run_id) == []
    assert log_keys_of(n, recent) != []
    assert await n.retention.sweep() == (0, 0)  # nothing twice


async def test_a_failure_in_metrics_never_keeps_the_coordinator_from_an_applied_batch(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Metrics and traces observe each applied batch before the coordinator hears of it; a
    bug there must be logged, not leave runs waiting on news the coordinator never got."""
    n, clock = await make_node()
    heard: list[object] = []

    def broken(fx: object) -> None:
        raise KeyError("a metrics bug")

    monkeypatch.setattr(n.metrics, "observe", broken)
    monkeypatch.setattr(n.coordinator, "on_effects", heard.append)
    with caplog.at_level(logging.ERROR, logger="kiok.master.node"):
        await n.log.propose(c.RegisterDag(at_ms=clock(), spec=cron_spec("observed", catchup=False)))
    assert len(heard) == 1
    assert "metrics or traces of an applied batch failed" in caplog.text


async def test_a_deleted_or_purged_run_gets_no_more_master_lines(make_node: NodeFactory) -> None:
    """A failed run whose webhook is still being retried, then deleted: its pending
    notification goes with it and no ``__run__`` line is written for it afterwards (one was:
    a log no deletion could reach again). A purged run's log stays empty the same way."""
    n, clock = await make_node(**{"kiok.notify.retry.initial.ms": 10, "kiok.notify.timeout.ms": 2000})
    spec = {
        "dag": {
            "id": "d",
            "notify": {"on_failure": [{"webhook": {"url": "http://no-such-host.invalid/hook"}}]},
        },
        "tasks": [{"id": "t", "type": "shell", "script": "false"}],
    }
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=spec))
    runs = []
    for _ in range(2):
        run_id = (await n.log.propose(c.CreateRun(at_ms=clock(), dag_id="d")))["runId"]
        fence = await n.log.propose(c.AssignRun(at_ms=clock(), run_id=run_id, worker="w1", term=1))
        failed = {"t": done(TaskState.FAILED, clock())}
        epoch = fence["epoch"]
        await n.log.propose(
            c.ReportTasks(at_ms=clock(), run_id=run_id, term=1, epoch=epoch, tasks=failed, worker="w1")
        )
        runs.append(run_id)
    deleted, purged = runs
    assert {x["runId"] for x in n.reader.notifications()} == {deleted, purged}
    await n.log.propose(c.DeleteRuns(at_ms=clock(), run_ids=(deleted,), strict=True, drop_notifications=True))
    await n.log.propose(c.PurgeRunLogs(at_ms=clock(), run_ids=(purged,)))
    assert state_keys_naming(n, deleted) == [] and log_keys_of(n, deleted) == []
    assert {x["runId"] for x in n.reader.notifications()} == {purged}
    await n.notifier.check()  # the purged run's webhook is tried (and fails: no such host)
    await asyncio.wait_for(asyncio.gather(*n.notifier._in_flight.values()), 10)
    assert n.notifier._next_ms and log_keys_of(n, purged) == []  # a retry is due; no line for it
    # Deleted while its webhook waits for a retry: the notifier forgets the retry, else a
    # retry time in the past made every pass start at once, a busy loop.
    await n.log.propose(c.DeleteRuns(at_ms=clock(), run_ids=(purged,), strict=True, drop_notifications=True))
    clock.ms += 3_600_000
    await n.notifier.check()
    assert n.notifier._timeout_s() > 0
    n.run_log(deleted, "cancel requested by admin")
    assert log_keys_of(n, deleted) == []
