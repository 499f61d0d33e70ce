"""What the API shows of tasks that are not running: the state (``presented``) and, in
words, why they wait, for the UI and ``kiok runs status``.

Derived from the same readiness rules as ``advance`` so the explanation can never disagree
with what the driver will do.
"""

from __future__ import annotations

from collections.abc import Mapping

from kiok.core.readiness import QUEUED_FIRST, UNSTARTED, UpstreamVerdict, upstream_verdict
from kiok.core.states import TERMINAL_TASK_STATES, TaskRecord, TaskState
from kiok.core.timefmt import iso_utc
from kiok.dag.spec import DagSpec, TaskSpec
from kiok.ids import TaskId

__all__ = ["presented", "presented_one", "presented_with_reason", "task_wait_reason"]


def presented(spec: DagSpec, tasks: Mapping[TaskId, TaskRecord], *, driven: bool) -> dict[TaskId, TaskRecord]:
    """Every task's record as the API shows it. A driver queues a task for its first attempt
    on its own and does not report it: that follows from the upstreams' records, which the
    masters have. So while the run has a driver, a PENDING task whose upstreams already meet
    its trigger rule is shown QUEUED, as the driver holds it."""
    return {task.id: presented_one(spec, tasks, task.id, driven=driven) for task in spec.tasks}


def presented_one(
    spec: DagSpec, tasks: Mapping[TaskId, TaskRecord], task_id: TaskId, *, driven: bool
) -> TaskRecord:
    """One task's record as ``presented`` shows it (reads only its upstreams' records, so a
    view can be brought up to date task by task)."""
    rec = tasks.get(task_id, UNSTARTED)
    if driven and rec.state is TaskState.PENDING:
        task = spec.task(task_id)
        ups = [tasks.get(u, UNSTARTED).state for u in task.requires]
        if upstream_verdict(task.trigger_rule, ups) == "ready":
            return QUEUED_FIRST
    return rec


def task_wait_reason(
    spec: DagSpec, tasks: Mapping[TaskId, TaskRecord], task_id: TaskId, now_ms: int
) -> str | None:
    """Why ``task_id`` is not running; ``None`` when it is running or terminal.

    ``now_ms`` marks a retry that is already due (the driver has not picked it up yet).
    Raises ``KeyError`` for a task id the spec does not have.
    """
    task = spec.task(task_id)
    rec = tasks.get(task_id, UNSTARTED)
    if rec.state is not TaskState.PENDING:
        return _not_pending_reason(rec, now_ms)
    ups = [tasks.get(u, UNSTARTED).state for u in task.requires]
    return _pending_reason(task, ups, upstream_verdict(task.trigger_rule, ups))


def presented_with_reason(
    spec: DagSpec, tasks: Mapping[TaskId, TaskRecord], task_id: TaskId, *, driven: bool, now_ms: int
) -> tuple[TaskRecord, str | None]:
    """``presented_one`` and ``task_wait_reason`` of the presented records at once, reading
    the upstreams' records once: a task after a 500-task fan-out has 500 to read, and a
    view of a run in flight is brought up to date on every read."""
    rec = tasks.get(task_id, UNSTARTED)
    if rec.state is not TaskState.PENDING:
        return rec, _not_pending_reason(rec, now_ms)
    task = spec.task(task_id)
    ups = [tasks.get(u, UNSTARTED).state for u in task.requires]
    verdict = upstream_verdict(task.trigger_rule, ups)
    if driven and verdict == "ready":  # shown QUEUED: an upstream shown QUEUED is not terminal either
        return QUEUED_FIRST, _not_pending_reason(QUEUED_FIRST, now_ms)
    return rec, _pending_reason(task, ups, verdict)


def _not_pending_reason(rec: TaskRecord, now_ms: int) -> str | None:
    if rec.state is TaskState.QUEUED:
        return "waiting for a free task slot"
    if rec.state is TaskState.RETRYING:
        head = f"retry (attempt {rec.attempt + 1})"
        if rec.retry_at_ms is None:
            return f"{head} due now"
        due = f"{head} at {iso_utc(rec.retry_at_ms)}"
        return f"{due} (due)" if rec.retry_at_ms <= now_ms else due
    return None


def _pending_reason(task: TaskSpec, ups: list[TaskState], verdict: UpstreamVerdict) -> str:
    if verdict == "wait":
        waiting = [u for u, s in zip(task.requires, ups, strict=True) if s not in TERMINAL_TASK_STATES]
        return f"waiting for upstream: {', '.join(waiting)}"
    if verdict == "skip":
        return f"will be skipped: trigger rule {task.trigger_rule.value} can no longer be met"
    return "waiting for the driver to queue it"
