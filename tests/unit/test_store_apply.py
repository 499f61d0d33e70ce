"""apply() through the command log on the in-memory store: fences, idempotent reports,
bootstrap once, refused commands dropped without harming their batch, group commit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kiok.core.states import TaskRecord, TaskState
from kiok.errors import Conflict, DagPaused, NotFound
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader

SPEC = {
    "dag": {"id": "d", "max_active_runs": 4},
    "tasks": [{"id": "a", "script": "x"}, {"id": "b", "script": "y", "requires": ["a"]}],
}


def setup() -> tuple[LocalCommandLog, StateReader]:
    kv = MemoryKV(keys.SPACES)
    return LocalCommandLog(kv), StateReader(kv)


def rec(state: TaskState, attempt: int) -> dict[str, Any]:
    return TaskRecord(state=state, attempt=attempt, worker="w").to_dict()


async def started_run() -> tuple[LocalCommandLog, StateReader, str, dict[str, Any]]:
    log, reader = setup()
    await log.propose(c.RegisterDag(at_ms=1, spec=SPEC))
    run_id = (await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"]
    fence = await log.propose(c.AssignRun(at_ms=3, run_id=run_id, worker="w1", term=1))
    return log, reader, run_id, fence


async def test_reports_under_a_stale_fence_are_rejected_and_counted() -> None:
    log, reader, run_id, fence = await started_run()
    await log.propose(
        c.ReportTasks(
            at_ms=4, run_id=run_id, term=1, epoch=fence["epoch"], tasks={"a": rec(TaskState.RUNNING, 1)}
        )
    )
    new_fence = await log.propose(c.AssignRun(at_ms=5, run_id=run_id, worker="w2", term=1))
    assert new_fence["epoch"] == fence["epoch"] + 1
    run = reader.run(run_id)
    assert run is not None and run["tasks"]["a"]["state"] == "QUEUED"  # lost with its driver
    stale = await log.propose(
        c.ReportTasks(
            at_ms=6, run_id=run_id, term=1, epoch=fence["epoch"], tasks={"a": rec(TaskState.SUCCESS, 1)}
        )
    )
    assert stale["fenced"] is True
    run = reader.run(run_id)
    assert run is not None and run["tasks"]["a"]["state"] == "QUEUED" and run["staleReports"] == 1


async def test_duplicate_and_older_attempt_reports_are_ignored_and_the_run_ends_once() -> None:
    log, reader, run_id, fence = await started_run()
    e = fence["epoch"]
    await log.propose(
        c.ReportTasks(at_ms=4, run_id=run_id, term=1, epoch=e, tasks={"a": rec(TaskState.SUCCESS, 1)})
    )
    dup = await log.propose(
        c.ReportTasks(at_ms=5, run_id=run_id, term=1, epoch=e, tasks={"a": rec(TaskState.SUCCESS, 1)})
    )
    assert dup["accepted"] == 0
    await log.propose(
        c.ReportTasks(at_ms=6, run_id=run_id, term=1, epoch=e, tasks={"b": rec(TaskState.SUCCESS, 2)})
    )
    old = await log.propose(
        c.ReportTasks(at_ms=7, run_id=run_id, term=1, epoch=e, tasks={"b": rec(TaskState.FAILED, 1)})
    )
    assert old["accepted"] == 0
    run = reader.run(run_id)
    assert run is not None and run["state"] == "SUCCESS" and run["endedMs"] == 6
    assert reader.active_runs() == []
    with pytest.raises(Conflict):
        await log.propose(c.AssignRun(at_ms=8, run_id=run_id, worker="w1", term=1))


async def test_a_new_run_stores_no_task_records_and_refuses_reports_for_tasks_it_lacks() -> None:
    kv = MemoryKV(keys.SPACES)  # what is stored, besides what the reader makes of it
    log, reader = LocalCommandLog(kv), StateReader(kv)
    await log.propose(c.RegisterDag(at_ms=1, spec=SPEC))
    run_id = (await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"]
    fence = await log.propose(c.AssignRun(at_ms=3, run_id=run_id, worker="w1", term=1))
    assert list(kv.scan(keys.META, keys.tasks_prefix(run_id).encode())) == []
    run = reader.run(run_id)
    assert run is not None and set(run["tasks"]) == {"a", "b"}
    assert run["tasks"]["b"] == {"state": "PENDING", "attempt": 0}
    out = await log.propose(
        c.ReportTasks(
            at_ms=4,
            run_id=run_id,
            term=1,
            epoch=fence["epoch"],
            tasks={"a": rec(TaskState.RUNNING, 1), "ghost": rec(TaskState.SUCCESS, 1)},
        )
    )
    assert out == {"accepted": 1, "stale": 1, "fenced": False}
    assert [key for key, _ in kv.scan(keys.META, keys.tasks_prefix(run_id).encode())] == [
        keys.task(run_id, "a").encode()
    ]
    run = reader.run(run_id)
    assert run is not None and run["open"] == 2 and run["staleReports"] == 1


async def test_a_burst_of_large_reports_is_applied_over_several_turns() -> None:
    log, reader, run_id, fence = await started_run()
    before = log.batches
    big = {f"t{i}": rec(TaskState.RUNNING, 1) for i in range(100)}  # weight 100 each (unknown ids)
    futures = [
        log.propose_nowait(c.ReportTasks(at_ms=4, run_id=run_id, term=1, epoch=fence["epoch"], tasks=big))
        for _ in range(3)
    ]
    small = log.propose_nowait(c.SetDagPaused(at_ms=4, dag_id="d", paused=True))
    await asyncio.gather(*futures, small)
    # 128 records' worth per write batch: each 100-record report gets a batch of its own,
    # and the one-weight command rides with the last.
    assert log.batches - before == 3
    run = reader.run(run_id)
    assert run is not None and run["staleReports"] == 300


async def test_bootstrap_happens_once_whatever_the_iam_store_holds() -> None:
    log, reader = setup()
    first = await log.propose(c.Bootstrap(at_ms=1, password_hash="h1", signing_key=b"k1"))
    assert first["bootstrapped"] is True
    second = await log.propose(c.Bootstrap(at_ms=2, password_hash="h2", signing_key=b"k2"))
    assert second["bootstrapped"] is False
    user = reader.user("admin")
    assert user is not None and user["passwordHash"] == "h1" and reader.signing_key() == b"k1"


async def test_a_refused_command_leaves_its_batch_intact_and_batches_group_commit() -> None:
    log, reader = setup()
    await log.propose(c.RegisterDag(at_ms=1, spec=SPEC))
    await log.propose(c.SetDagPaused(at_ms=2, dag_id="d", paused=True))
    batches_before = log.batches
    results = await asyncio.gather(
        log.propose(c.RegisterDag(at_ms=3, spec={**SPEC, "dag": {"id": "e"}})),
        log.propose(c.CreateRun(at_ms=3, dag_id="d")),  # paused: refused
        log.propose(c.CreateRun(at_ms=3, dag_id="zz")),  # unknown: refused
        log.propose(c.SetDagPaused(at_ms=3, dag_id="e", paused=True)),  # sees the write before it
        return_exceptions=True,
    )
    assert log.batches == batches_before + 1
    assert isinstance(results[1], DagPaused) and isinstance(results[2], NotFound)
    assert reader.dag("e") is not None and reader.dag("e")["paused"] is True  # type: ignore[index]
    assert reader.runs()[0] == []


async def test_cancel_of_an_unassigned_run_ends_it_at_once() -> None:
    log, reader = setup()
    await log.propose(c.RegisterDag(at_ms=1, spec=SPEC))
    run_id = (await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"]
    await log.propose(c.CancelRun(at_ms=3, run_id=run_id))
    run = reader.run(run_id)
    assert run is not None and run["state"] == "CANCELLED"
    assert {t["state"] for t in run["tasks"].values()} == {"CANCELLED"}
    again = await log.propose(c.CancelRun(at_ms=4, run_id=run_id))
    assert again["state"] == "CANCELLED"


def test_commands_round_trip_through_their_wire_form() -> None:
    cmd = c.ReportTasks(at_ms=5, run_id="r", term=2, epoch=3, tasks={"a": {"state": "SUCCESS"}})
    assert c.from_wire(cmd.to_wire()) == cmd
