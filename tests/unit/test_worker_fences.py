"""A worker is trusted only for the runs it drives under their current fence: reports,
releases and log batches from any other worker (or under an old fence, or for a finished
run) change nothing. ``apply()`` on the in-memory store, and the masters' ``LogGate``."""

from __future__ import annotations

from typing import Any

from kiok.core.states import TaskRecord, TaskState
from kiok.master.log_gate import LogGate
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.effects import Effects
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader

SPEC = {"dag": {"id": "d", "max_active_runs": 4}, "tasks": [{"id": "a", "script": "x"}]}


def rec(state: TaskState) -> dict[str, Any]:
    return TaskRecord(state=state, attempt=1, worker="w1").to_dict()


async def assigned_run() -> tuple[LocalCommandLog, StateReader, str, int]:
    kv = MemoryKV(keys.SPACES)
    log, reader = LocalCommandLog(kv), StateReader(kv)
    await log.propose(c.RegisterDag(at_ms=1, spec=SPEC))
    run_id = (await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"]
    fence = await log.propose(c.AssignRun(at_ms=3, run_id=run_id, worker="w1", term=1))
    return log, reader, run_id, fence["epoch"]


def header(reader: StateReader, run_id: str) -> dict[str, Any]:
    run = reader.run(run_id)
    assert run is not None
    return run


async def test_a_report_from_a_worker_that_does_not_drive_the_run_is_fenced() -> None:
    log, reader, run_id, epoch = await assigned_run()
    forged = await log.propose(
        c.ReportTasks(
            at_ms=4, run_id=run_id, term=1, epoch=epoch, tasks={"a": rec(TaskState.FAILED)}, worker="w2"
        )
    )
    assert forged["fenced"] is True
    run = header(reader, run_id)
    assert run["state"] == "RUNNING" and run["tasks"]["a"]["state"] == "PENDING" and run["staleReports"] == 1
    real = await log.propose(
        c.ReportTasks(
            at_ms=5, run_id=run_id, term=1, epoch=epoch, tasks={"a": rec(TaskState.SUCCESS)}, worker="w1"
        )
    )
    assert real["fenced"] is False and header(reader, run_id)["state"] == "SUCCESS"


async def test_only_the_driver_can_give_a_run_back() -> None:
    log, reader, run_id, epoch = await assigned_run()
    out = await log.propose(c.ReleaseRun(at_ms=4, run_id=run_id, epoch=epoch, reason="x", worker="w2"))
    assert out == {"released": False} and header(reader, run_id)["worker"] == "w1"
    out = await log.propose(c.ReleaseRun(at_ms=5, run_id=run_id, epoch=epoch, reason="x", worker="w1"))
    assert out == {"released": True} and header(reader, run_id)["worker"] is None


async def test_append_logs_keeps_only_the_current_drivers_chunks() -> None:
    log, reader, run_id, epoch = await assigned_run()
    seen: list[Effects] = []
    log.subscribe(seen.append)
    await log.propose(
        c.AppendLogs(
            at_ms=4,
            chunks=[
                [run_id, "a", b"driver\n", "w1", 1, epoch],
                [run_id, "a", b"other worker\n", "w2", 1, epoch],
                [run_id, "a", b"old fence\n", "w1", 1, epoch - 1],
                [run_id, "a", b"old term\n", "w1", 0, epoch],
                ["no-such-run", "a", b"ghost\n", "w1", 1, epoch],
                [run_id, "__run__", b"the master's own line\n"],
            ],
        )
    )
    fx = seen[-1]
    assert fx.log_appends == [
        (run_id, "a", b"driver\n", None),
        (run_id, "__run__", b"the master's own line\n", None),
    ]
    assert fx.stale_logs == 4
    await log.propose(
        c.ReportTasks(
            at_ms=5, run_id=run_id, term=1, epoch=epoch, tasks={"a": rec(TaskState.SUCCESS)}, worker="w1"
        )
    )
    assert header(reader, run_id)["state"] == "SUCCESS"
    await log.propose(c.AppendLogs(at_ms=6, chunks=[[run_id, "a", b"after the end\n", "w1", 1, epoch]]))
    assert seen[-1].log_appends == [] and seen[-1].stale_logs == 1


class CountingReader(StateReader):
    def __init__(self, reader: StateReader) -> None:
        self.__dict__.update(reader.__dict__)
        self.reads = 0

    def run_header(self, run_id: str) -> dict[str, Any] | None:
        self.reads += 1
        return super().run_header(run_id)


async def test_the_log_gate_admits_the_driver_cheaply_and_follows_reassignment() -> None:
    log, reader, run_id, epoch = await assigned_run()
    counting = CountingReader(reader)
    gate = LogGate(counting)
    log.subscribe(gate.on_effects)

    assert gate.admits(run_id, "w1", 1, epoch)
    for _ in range(100):  # the hot path: no store read for a driver seen before
        assert gate.admits(run_id, "w1", 1, epoch)
    assert counting.reads == 1
    assert not gate.admits(run_id, "w2", 1, epoch)  # another worker, even with the right fence
    assert not gate.admits(run_id, "w1", 1, epoch + 1)
    assert not gate.admits("no-such-run", "w1", 1, epoch)

    new = await log.propose(c.AssignRun(at_ms=4, run_id=run_id, worker="w2", term=1))
    assert not gate.admits(run_id, "w1", 1, epoch)  # the cut-off driver
    assert gate.admits(run_id, "w2", 1, new["epoch"])

    await log.propose(
        c.ReportTasks(
            at_ms=5,
            run_id=run_id,
            term=1,
            epoch=new["epoch"],
            # w1 may have started attempt 1 unreported: the new driver's attempt is 2
            tasks={"a": TaskRecord(state=TaskState.SUCCESS, attempt=2, worker="w2").to_dict()},
            worker="w2",
        )
    )
    assert header(reader, run_id)["state"] == "SUCCESS"
    assert not gate.admits(run_id, "w2", 1, new["epoch"])  # a finished run takes no more log


async def test_the_log_gate_forgets_a_released_run() -> None:
    log, reader, run_id, epoch = await assigned_run()
    counting = CountingReader(reader)
    gate = LogGate(counting)
    log.subscribe(gate.on_effects)
    assert gate.admits(run_id, "w1", 1, epoch)
    await log.propose(c.ReleaseRun(at_ms=4, run_id=run_id, epoch=epoch, reason="drain", worker="w1"))
    assert not gate.admits(run_id, "w1", 1, epoch)  # read again: the release was seen
    assert counting.reads == 2
