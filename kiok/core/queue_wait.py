"""How long an attempt waited between becoming ready and starting (``kiok_task_queue_wait_seconds``).

A driver queues a task for its first attempt without reporting it (``kiok.core.waiting``),
so the masters learn the moment it became ready from its upstreams' records: the end of the
upstream whose outcome met the trigger rule. A retry became ready at its ``retry_at_ms``. No
task can be queued before a driver holds the run, so the run's start (or its last re-run) is
the earliest moment. What the masters cannot date (a retry already reported QUEUED, whose
due time that record no longer holds) is not observed rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping

from kiok.core.readiness import UNSTARTED, upstream_verdict
from kiok.core.states import TERMINAL_TASK_STATES, TaskRecord, TaskState
from kiok.dag.spec import TaskSpec
from kiok.ids import TaskId

__all__ = ["queue_wait_ms", "started_attempt"]


def started_attempt(before: TaskRecord, after: TaskRecord) -> bool:
    """Whether an accepted report is the first to show an attempt's start (RUNNING, or its
    outcome when the driver's linger merged the two)."""
    return after.started_at_ms is not None and after.attempt > before.attempt


def _ready_from_upstreams(task: TaskSpec, tasks: Mapping[TaskId, TaskRecord]) -> int | None:
    """When the trigger rule was first met: upstream outcomes revealed in the order they
    ended. None when the records cannot say (an upstream without an end time).

    A verdict depends only on which outcomes are in and whether all are, so it can change
    only where an outcome is first revealed, and at the last end: one pass finds when each
    outcome first ended, and a handful of verdicts are asked in that order. A fan-in of 500
    upstreams (or 20 × 20 between two layers of a diamond) costs one look at each."""
    first: dict[TaskState, int] = {}
    last = -1
    for u in task.requires:
        rec = tasks.get(u, UNSTARTED)
        ended = rec.ended_at_ms
        if ended is None or rec.state not in TERMINAL_TASK_STATES:
            return None
        last = max(last, ended)
        if ended < first.get(rec.state, ended + 1):
            first[rec.state] = ended
    if last < 0:
        return None
    revealed: list[TaskState] = []
    for state, ended in sorted(first.items(), key=_end_time):
        revealed.append(state)
        if upstream_verdict(task.trigger_rule, [*revealed, TaskState.PENDING]) == "ready":
            return ended
    return last if upstream_verdict(task.trigger_rule, revealed) == "ready" else None


def _end_time(first_end: tuple[TaskState, int]) -> int:
    return first_end[1]


def queue_wait_ms(
    task: TaskSpec, before: TaskRecord, start_ms: int, tasks: Mapping[TaskId, TaskRecord], floor_ms: int
) -> int | None:
    """Milliseconds from ``task`` becoming ready to the attempt that started at ``start_ms``.

    ``before`` is the task's record before the report, ``tasks`` the run's records (for the
    upstreams), ``floor_ms`` when the run was last handed to drivers (its start or re-run)."""
    if before.state is TaskState.RETRYING:
        ready = before.retry_at_ms if before.retry_at_ms is not None else before.ended_at_ms
    elif before.state is TaskState.PENDING:
        ready = _ready_from_upstreams(task, tasks) if task.requires else floor_ms
    else:  # QUEUED already reported (a retry, or an attempt passed on after a lost driver)
        return None
    if ready is None:
        return None
    return max(0, start_ms - max(ready, floor_ms))
