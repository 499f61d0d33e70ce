"""A driver lost while a task waited to start costs the task no retry.

When a run is taken from a driver that did not give it back, every task it could have been
starting is queued past that attempt number (``_pass_unreported_attempts``), so that the next
driver never reuses a number. No such attempt ran: a driver runs an attempt only once its
start is committed, and the lost driver's start is fenced off. Its number used to count
against the task's retries all the same: a task with ``retries: 1`` that was only queued when
its driver died failed for good after one execution (and each further loss ate one more)."""

from __future__ import annotations

import pytest

from kiok.core.readiness import advance
from kiok.core.retry import fail_event
from kiok.core.states import TaskRecord, TaskState
from kiok.core.transitions import TaskEvent, TaskEventKind, apply_task_event
from kiok.dag.load import compiled_spec
from kiok.ids import TaskId
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader

pytestmark = pytest.mark.asyncio

SPEC = {
    "dag": {"id": "d", "max_active_runs": 4},
    "tasks": [{"id": "a", "script": "x", "retries": 2, "retry_delay": "1s"}],
}


async def _execute_and_fail(
    log: LocalCommandLog, reader: StateReader, run_id: str, driver: tuple[str, int], at_ms: int
) -> TaskRecord:
    """What a driver does with the stored record of "a": queue it (``advance``), start it,
    run it, see it fail (decided as ``RunDriver._finish`` decides it), report it as ``driver``
    (worker, epoch)."""
    worker, epoch = driver
    spec = compiled_spec(SPEC)
    stored = {TaskId(t): TaskRecord.from_dict(r) for t, r in reader.run(run_id)["tasks"].items()}  # type: ignore[index]
    queued = advance(spec, stored, at_ms).tasks[TaskId("a")]
    started, _ = apply_task_event(queued, TaskEvent(TaskEventKind.START, at_ms, worker=worker))
    failure = fail_event(
        spec.task(TaskId("a")), started.attempt - started.attempt_base, at_ms + 1, cap_ms=60_000, exit_code=1
    )
    ended, _ = apply_task_event(started, failure)
    report = c.ReportTasks(
        at_ms=at_ms + 1, run_id=run_id, term=1, epoch=epoch, tasks={"a": ended.to_dict()}, worker=worker
    )
    assert (await log.propose(report))["accepted"] == 1
    return ended


@pytest.mark.parametrize("lost_while", ["queued", "waiting for its retry"])
async def test_a_task_whose_driver_was_lost_before_it_started_keeps_every_retry(lost_while: str) -> None:
    kv = MemoryKV(keys.SPACES)
    log, reader = LocalCommandLog(kv), StateReader(kv)
    await log.propose(c.RegisterDag(at_ms=1, spec=SPEC))
    run_id = (await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"]
    driver = ("w1", (await log.propose(c.AssignRun(at_ms=3, run_id=run_id, worker="w1", term=1)))["epoch"])
    executions = 0
    if lost_while == "waiting for its retry":
        assert (await _execute_and_fail(log, reader, run_id, driver, 10)).state is TaskState.RETRYING
        executions += 1
    # The driver dies before the next start is confirmed; two more drivers are lost the same way.
    for at in (5_000, 6_000, 7_000):
        assigned = await log.propose(c.AssignRun(at_ms=at, run_id=run_id, worker=f"w{at}", term=1))
        driver = (f"w{at}", assigned["epoch"])
    states = []
    while True:
        ended = await _execute_and_fail(log, reader, run_id, driver, 100_000 * (executions + 1))
        executions += 1
        states.append(ended.state)
        if ended.state is not TaskState.RETRYING:
            break
    assert executions == 3, states  # retries: 2 -> three executions, whatever the lost drivers
    assert ended.state is TaskState.FAILED
