"""apply() for the data lifecycle on the in-memory store: maintenance mode (replicated flag,
no new runs, skipped firings) and deleting finished runs whole or only their logs."""

from __future__ import annotations

from typing import Any

import pytest

from kiok.core.states import TaskRecord, TaskState
from kiok.errors import Conflict, MaintenanceMode, NotFound
from kiok.master.retention import RetentionSweeper
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.effects import Effects
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader

SPEC = {
    "dag": {"id": "d", "max_active_runs": 4},
    "tasks": [{"id": "a", "script": "x"}, {"id": "b", "script": "y", "requires": ["a"]}],
}


def setup() -> tuple[LocalCommandLog, StateReader, MemoryKV, list[Effects]]:
    kv = MemoryKV(keys.SPACES)
    log = LocalCommandLog(kv)
    seen: list[Effects] = []
    log.subscribe(seen.append)
    return log, StateReader(kv), kv, seen


def done(state: TaskState) -> dict[str, Any]:
    return TaskRecord(state=state, attempt=1, worker="w1", started_at_ms=4, ended_at_ms=5).to_dict()


async def finished_run(log: LocalCommandLog, at: int = 2) -> str:
    run_id: str = (await log.propose(c.CreateRun(at_ms=at, dag_id="d")))["runId"]
    fence = await log.propose(c.AssignRun(at_ms=at + 1, run_id=run_id, worker="w1", term=1))
    tasks = {"a": done(TaskState.SUCCESS), "b": done(TaskState.SUCCESS)}
    await log.propose(
        c.ReportTasks(at_ms=at + 2, run_id=run_id, term=1, epoch=fence["epoch"], tasks=tasks, worker="w1")
    )
    return run_id


def keys_naming(kv: MemoryKV, run_id: str) -> list[tuple[str, bytes]]:
    """Every key, in every keyspace, whose key or value names the run."""
    found = []
    for space in keys.SPACES:
        for key, value in kv.scan(space, b""):
            if run_id.encode() in key or run_id.encode() in value:
                found.append((space, key))
    return found


async def test_maintenance_is_a_replicated_flag_that_stops_new_runs_only() -> None:
    log, reader, _, seen = setup()
    await log.propose(c.RegisterDag(at_ms=1, spec=SPEC))
    pending = (await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"]
    assert reader.maintenance()["enabled"] is False and reader.maintenance()["sinceMs"] is None

    on = await log.propose(c.SetMaintenance(at_ms=10, enabled=True, by="admin"))
    assert on["changed"] and seen[-1].maintenance_changed
    again = await log.propose(c.SetMaintenance(at_ms=20, enabled=True, by="other"))
    assert not again["changed"] and reader.maintenance()["sinceMs"] == 10  # the window keeps its start
    with pytest.raises(MaintenanceMode):
        await log.propose(c.CreateRun(at_ms=21, dag_id="d"))
    # Cancelling and DAG changes still work.
    assert (await log.propose(c.CancelRun(at_ms=22, run_id=pending)))["state"] == "CANCELLED"
    await log.propose(c.SetDagPaused(at_ms=23, dag_id="d", paused=False))

    await log.propose(c.SetMaintenance(at_ms=30, enabled=False, by="admin"))
    assert reader.maintenance() == {"enabled": False, "sinceMs": 10, "untilMs": 30, "by": "admin"}
    assert (await log.propose(c.CreateRun(at_ms=31, dag_id="d")))["runId"]


async def test_a_firing_proposed_during_maintenance_creates_nothing_but_moves_the_watermark() -> None:
    log, reader, _, _ = setup()
    spec = {**SPEC, "dag": {**SPEC["dag"], "schedule": "* * * * *"}}  # type: ignore[dict-item]
    await log.propose(c.RegisterDag(at_ms=0, spec=spec))
    await log.propose(c.SetMaintenance(at_ms=1, enabled=True))
    result = await log.propose(
        c.FireSchedule(at_ms=60_001, dag_id="d", fire_times=(60_000,), watermark_ms=60_001)
    )
    assert result == {"created": []}
    dag = reader.dag("d")
    assert dag is not None and dag["watermarkMs"] == 60_001
    assert reader.runs(dag_id="d")[0] == []


async def test_deleting_a_finished_run_removes_everything_it_owns() -> None:
    log, reader, kv, seen = setup()
    await log.propose(c.RegisterDag(at_ms=1, spec=SPEC))
    run_id = await finished_run(log)
    other = await finished_run(log, at=10)
    result = await log.propose(c.DeleteRuns(at_ms=100, run_ids=(run_id,), strict=True))
    assert result == {"deleted": [run_id], "kept": []}
    assert seen[-1].runs_deleted == [run_id] and seen[-1].log_deletes == [run_id]
    assert keys_naming(kv, run_id) == []
    assert reader.run(run_id) is None
    assert [r["runId"] for r in reader.runs()[0]] == [other]
    assert [r["runId"] for r in reader.runs(dag_id="d")[0]] == [other]
    with pytest.raises(NotFound):
        await log.propose(c.DeleteRuns(at_ms=101, run_ids=(run_id,), strict=True))


async def test_only_finished_runs_are_deleted() -> None:
    log, reader, _, _ = setup()
    await log.propose(c.RegisterDag(at_ms=1, spec=SPEC))
    pending = (await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"]
    running = (await log.propose(c.CreateRun(at_ms=3, dag_id="d")))["runId"]
    await log.propose(c.AssignRun(at_ms=4, run_id=running, worker="w1", term=1))
    finished = await finished_run(log, at=5)
    for run_id in (pending, running):
        with pytest.raises(Conflict, match="only a finished run"):
            await log.propose(c.DeleteRuns(at_ms=9, run_ids=(run_id,), strict=True))
    # A sweep's batch leaves live and unknown runs alone, whatever it was told.
    result = await log.propose(c.DeleteRuns(at_ms=9, run_ids=(pending, running, "nope", finished)))
    assert result == {"deleted": [finished], "kept": [pending, running, "nope"]}
    assert reader.run_header(pending) is not None and reader.run_header(running) is not None
    assert [r["runId"] for r in reader.active_runs()] == [pending, running]


async def test_a_scheduled_runs_marker_goes_only_once_the_watermark_is_past_it() -> None:
    log, _, kv, _ = setup()
    spec = {**SPEC, "dag": {**SPEC["dag"], "schedule": "* * * * *"}}  # type: ignore[dict-item]
    await log.propose(c.RegisterDag(at_ms=0, spec=spec))
    # A marker ahead of the watermark (not possible from the scheduler, but apply() must
    # not let a deletion re-open an interval the scheduler may still propose).
    fired = await log.propose(c.FireSchedule(at_ms=1, dag_id="d", fire_times=(60_000,), watermark_ms=1))
    ahead = fired["created"][0]
    await log.propose(c.CancelRun(at_ms=2, run_id=ahead))
    await log.propose(c.DeleteRuns(at_ms=3, run_ids=(ahead,)))
    assert kv.get(keys.META, keys.scheduled("d", 60_000).encode()) is not None
    fired = await log.propose(
        c.FireSchedule(at_ms=120_001, dag_id="d", fire_times=(120_000,), watermark_ms=120_001)
    )
    behind = fired["created"][0]
    await log.propose(c.CancelRun(at_ms=120_002, run_id=behind))
    await log.propose(c.DeleteRuns(at_ms=120_003, run_ids=(behind,)))
    assert kv.get(keys.META, keys.scheduled("d", 120_000).encode()) is None
    assert keys_naming(kv, behind) == []


async def test_purging_logs_keeps_the_run_and_happens_once() -> None:
    log, reader, _, seen = setup()
    await log.propose(c.RegisterDag(at_ms=1, spec=SPEC))
    live = (await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"]
    run_id = await finished_run(log, at=3)
    ended = reader.run_header(run_id)
    assert ended is not None
    assert (await log.propose(c.PurgeRunLogs(at_ms=50, run_ids=(run_id, live))))["purged"] == [run_id]
    assert seen[-1].log_deletes == [run_id]
    header = reader.run_header(run_id)
    assert header is not None and header["logsPurgedMs"] == 50 and header["state"] == "SUCCESS"
    # The run view shows it (logsPurgedAt): a new version of the run, told to readers.
    assert header["version"] == ended["version"] + 1
    assert seen[-1].run_versions[run_id] == (ended["version"], header["version"])
    assert (await log.propose(c.PurgeRunLogs(at_ms=60, run_ids=(run_id,))))["purged"] == []
    # Deleting the run later does not delete its (already gone) logs again.
    await log.propose(c.DeleteRuns(at_ms=70, run_ids=(run_id,)))
    assert seen[-1].runs_deleted == [run_id] and seen[-1].log_deletes == []


async def test_master_lines_for_a_deleted_or_purged_run_are_dropped_by_apply() -> None:
    """Replicated masters add their ``__run__`` lines through ``AppendLogs``: one for a run
    deleted (or whose logs were purged) by the time it is applied is dropped, not stored as
    a log no deletion reaches again."""
    log, _, _, seen = setup()
    await log.propose(c.RegisterDag(at_ms=1, spec=SPEC))
    deleted, purged, live = [await finished_run(log, at=at) for at in (3, 10, 20)]
    await log.propose(c.DeleteRuns(at_ms=30, run_ids=(deleted,)))
    await log.propose(c.PurgeRunLogs(at_ms=31, run_ids=(purged,)))
    chunks = [[r, "__run__", b"late\n"] for r in (deleted, purged, live, "never")]
    await log.propose(c.AppendLogs(at_ms=32, chunks=chunks))
    assert [a[0] for a in seen[-1].log_appends] == [live]


async def _rerun_to_the_end(log: LocalCommandLog, run_id: str, at: int, attempt: int) -> None:
    await log.propose(c.RerunRun(at_ms=at, run_id=run_id, only_failed=False, queued=True))
    fence = await log.propose(c.AssignRun(at_ms=at + 1, run_id=run_id, worker="w1", term=1))
    again = TaskRecord(
        state=TaskState.SUCCESS, attempt=attempt, worker="w1", started_at_ms=at + 1, ended_at_ms=at + 2
    )
    tasks = {t: again.to_dict() for t in ("a", "b")}
    await log.propose(
        c.ReportTasks(at_ms=at + 2, run_id=run_id, term=1, epoch=fence["epoch"], tasks=tasks, worker="w1")
    )


async def test_a_rerun_after_its_logs_were_purged_has_logs_retention_and_deletion_take_again() -> None:
    log, reader, _, seen = setup()
    await log.propose(c.RegisterDag(at_ms=1, spec=SPEC))
    run_id = await finished_run(log, at=3)
    day = 86_400_000
    now = [2 * day]
    sweeper = RetentionSweeper(
        log, reader, lambda: now[0], runs_ms=None, logs_ms=day, interval_ms=1000, batch=10
    )
    assert await sweeper.sweep() == (0, 1)  # the logs go (and the sweeper remembers the run as done)
    await _rerun_to_the_end(log, run_id, 2 * day + 1, attempt=2)
    header = reader.run_header(run_id)
    assert header is not None and header["state"] == "SUCCESS"
    assert "logsPurgedMs" not in header  # the run view no longer says its (new) logs are purged
    now[0] = 2 * day + 10  # the new logs are kept a log retention from the run's new end...
    assert await sweeper.sweep() == (0, 0)
    now[0] = 3 * day + 10  # ...and no longer
    assert await sweeper.sweep() == (0, 1) and seen[-1].log_deletes == [run_id]
    # Re-run once more: deleting the run deletes the new logs too.
    await _rerun_to_the_end(log, run_id, 4 * day, attempt=3)
    await log.propose(c.DeleteRuns(at_ms=4 * day + 10, run_ids=(run_id,), strict=True))
    assert seen[-1].runs_deleted == [run_id] and seen[-1].log_deletes == [run_id]


async def test_a_rerun_proposed_before_its_dag_was_deleted_is_refused_when_applied_after() -> None:
    """The API's request and its entry are apart in time: a delete committed between them
    wins, decided by apply(), so no replica re-opens a run of a deleted DAG."""
    log, reader, _, _ = setup()
    await log.propose(c.RegisterDag(at_ms=1, spec=SPEC))
    run_id = await finished_run(log, at=3)
    await log.propose(c.DeleteDag(at_ms=10, dag_id="d"))
    with pytest.raises(Conflict, match="'d' was deleted"):
        await log.propose(c.RerunRun(at_ms=11, run_id=run_id, queued=True, dag_must_exist=True))
    assert reader.run_header(run_id)["state"] == "SUCCESS"  # type: ignore[index]
    # An entry logged before the field existed applies as it then did.
    await log.propose(c.RerunRun(at_ms=12, run_id=run_id, only_failed=False, queued=True))
    assert reader.run_header(run_id)["state"] == "PENDING"  # type: ignore[index]


async def test_audit_records_past_their_retention_go_oldest_first_in_batches() -> None:
    """The lifecycle probe of session 29: the audit log was never trimmed, and nothing said
    so. ``kiok.retention.audit.days`` deletes what is older, the oldest first; a record
    stamped out of order (a leader whose clock ran behind) waits rather than be skipped."""
    log, reader, _, _ = setup()
    day = 86_400_000
    stamps = [1 * day, 2 * day, 3 * day, 2 * day + 5, 9 * day, 10 * day]
    for at in stamps:
        await log.propose(c.AppendAudit(at_ms=at, actor="alice", action="iam:PutUser", target=f"u{at}"))
    now = [10 * day + 1]
    sweeper = RetentionSweeper(
        log, reader, lambda: now[0], runs_ms=None, logs_ms=None, interval_ms=1000, batch=2, audit_ms=7 * day
    )
    assert await sweeper.sweep_audit() == 4  # two batches of 2; 9 and 10 days are kept
    entries, _ = reader.audit(limit=100)
    assert sorted(e["atMs"] for e in entries) == [9 * day, 10 * day]
    proposed = log.commands
    assert await sweeper.sweep_audit() == 0
    assert log.commands == proposed  # nothing due: no command (the re-probe: one per interval)
    # Out of order: the record stamped 1 day after one stamped 3 days stays until it is reached.
    log2, reader2, _, _ = setup()
    for at in (3 * day, 1 * day, 9 * day):
        await log2.propose(c.AppendAudit(at_ms=at, actor="a", action="x"))
    kept = await log2.propose(c.PurgeAudit(at_ms=now[0], before_ms=2 * day, max_records=10))
    assert kept == {"purged": 0}
    assert await log2.propose(c.PurgeAudit(at_ms=now[0], before_ms=4 * day, max_records=10)) == {"purged": 2}
    assert [e["atMs"] for e in reader2.audit(limit=10)[0]] == [9 * day]
    # Kept forever by default.
    forever = RetentionSweeper(
        log2, reader2, lambda: 100 * day, runs_ms=None, logs_ms=None, interval_ms=1, batch=1
    )
    assert await forever.sweep_audit() == 0
