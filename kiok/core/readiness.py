"""The driver's graph walk: which tasks the DAG lets move on, without running anything.

``advance`` is the pure step the driver (and the store, on cancel) calls after every change:
it queues tasks whose trigger rule is met, skips those whose rule can no longer be met,
re-queues due retries, and says when to wake up next and whether the run has ended. Every
change goes through ``apply_task_event``, so the table stays the only authority.

Readiness is monotone: a verdict of "ready" or "skip" depends only on upstreams in terminal
states, which never change. So one pass in topological order reaches the fixpoint, in
O(tasks + edges).
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from kiok.core.states import TERMINAL_TASK_STATES as _TERMINAL
from kiok.core.states import RunState, TaskRecord, TaskState
from kiok.core.transitions import TaskEvent, TaskEventKind, Verdict, apply_task_event
from kiok.dag.spec import DagSpec, TaskSpec, TriggerRule
from kiok.errors import DagValidationError
from kiok.ids import TaskId

__all__ = ["Advance", "UpstreamVerdict", "advance", "run_outcome", "topological_order", "upstream_verdict"]

UpstreamVerdict = Literal["ready", "wait", "skip"]

#: What a task missing from the snapshot counts as.
UNSTARTED = TaskRecord()
#: What READY makes of an unstarted task: queued for its first attempt (computed by the
#: transition table, so it cannot drift from it).
QUEUED_FIRST = apply_task_event(UNSTARTED, TaskEvent(TaskEventKind.READY, 0))[0]

_S = TaskState


def upstream_verdict(rule: TriggerRule, upstream_states: Sequence[TaskState]) -> UpstreamVerdict:
    """Whether a PENDING task with these upstream states may run, must wait, or is skipped.

    A verdict depends only on which states occur, not how often: the distinct ones are
    looked at (a task after a 500-task fan-out is asked about on every read of its run)."""
    if not upstream_states:
        return "ready"
    kinds = set(upstream_states)
    done = kinds & _TERMINAL
    all_done = len(done) == len(kinds)
    if rule is TriggerRule.ALL_SUCCESS:
        if done - {_S.SUCCESS}:
            return "skip"
        return "ready" if all_done else "wait"
    if rule is TriggerRule.ALL_DONE:
        return "ready" if all_done else "wait"
    if rule is TriggerRule.ONE_FAILED:
        if _S.FAILED in done:
            return "ready"
        return "skip" if all_done else "wait"
    if rule is TriggerRule.ALL_FAILED:
        if done - {_S.FAILED}:
            return "skip"
        return "ready" if all_done else "wait"
    raise AssertionError(f"unknown trigger rule {rule!r}")  # pragma: no cover


@dataclass(frozen=True)
class Advance:
    """The result of one ``advance`` call."""

    #: The new snapshot: every task of the spec (missing ones as PENDING), plus any extra
    #: records the caller passed in, untouched.
    tasks: Mapping[TaskId, TaskRecord]
    #: Tasks whose record changed, in the order they changed.
    changed: tuple[TaskId, ...]
    #: Earliest ``retry_at_ms`` of a task still RETRYING (always after ``now_ms``).
    next_wakeup_ms: int | None
    #: The run's terminal state once every task is terminal, else ``None``.
    run_state: RunState | None


def advance(
    spec: DagSpec, tasks: Mapping[TaskId, TaskRecord], now_ms: int, *, cancelled: bool = False
) -> Advance:
    """Apply every transition the graph allows at ``now_ms``, to a fixpoint.

    PENDING -> QUEUED when the trigger rule is met, PENDING -> SKIPPED when it can no longer
    be (this cascades downstream), RETRYING -> QUEUED when the retry is due. With
    ``cancelled`` every non-terminal task except RUNNING ones becomes CANCELLED instead; the
    caller kills RUNNING ones and reports CANCEL for them.
    """
    snap: dict[TaskId, TaskRecord] = dict(tasks)
    changed: list[TaskId] = []
    wakeup: int | None = None

    def fire(tid: TaskId, rec: TaskRecord, kind: TaskEventKind) -> None:
        new, verdict = apply_task_event(rec, TaskEvent(kind, now_ms))
        if verdict is Verdict.APPLIED:
            snap[tid] = new
            changed.append(tid)

    for task in topological_order(spec):
        rec = snap.get(task.id)
        if rec is None:
            rec = snap[task.id] = UNSTARTED
        state = rec.state
        if state in _TERMINAL or state is _S.RUNNING:
            continue
        if cancelled:
            fire(task.id, rec, TaskEventKind.CANCEL)
        elif state is _S.PENDING:
            ups = [snap.get(u, UNSTARTED).state for u in task.requires]
            verdict = upstream_verdict(task.trigger_rule, ups)
            if verdict == "ready":
                fire(task.id, rec, TaskEventKind.READY)
            elif verdict == "skip":
                fire(task.id, rec, TaskEventKind.SKIP)
        elif state is _S.RETRYING:
            due = rec.retry_at_ms
            if due is None or due <= now_ms:
                fire(task.id, rec, TaskEventKind.RETRY_DUE)
            elif wakeup is None or due < wakeup:
                wakeup = due
    return Advance(snap, tuple(changed), wakeup, run_outcome(snap, spec.task_ids, cancelled))


def run_outcome(
    tasks: Mapping[TaskId, TaskRecord], task_ids: Sequence[TaskId], cancelled: bool
) -> RunState | None:
    """``None`` until every task is terminal (a missing one is PENDING); then CANCELLED if
    the run was cancelled, FAILED if any task FAILED, CANCELLED if any task was cancelled
    on its own, else SUCCESS (every task SUCCESS or SKIPPED)."""
    any_failed = any_cancelled = False
    for tid in task_ids:
        rec = tasks.get(tid)
        if rec is None or rec.state not in _TERMINAL:
            return None
        any_failed = any_failed or rec.state is _S.FAILED
        any_cancelled = any_cancelled or rec.state is _S.CANCELLED
    return final_run_state(cancelled=cancelled, any_failed=any_failed, any_cancelled=any_cancelled)


def final_run_state(
    *, cancelled: bool, any_failed: bool, any_cancelled: bool, timed_out: bool = False
) -> RunState:
    """How a run ends once none of its tasks is open: the one rule, used by the driver
    (``run_outcome``) and by the masters when they commit the end (``apply_runs``). A run
    that outlived its ``run_timeout`` FAILED, whatever its tasks did; then a cancelled run is
    CANCELLED; then any FAILED task fails it; a task cancelled on its own makes it CANCELLED;
    else SUCCESS (every task SUCCESS or SKIPPED)."""
    if timed_out:
        return RunState.FAILED
    if cancelled:
        return RunState.CANCELLED
    if any_failed:
        return RunState.FAILED
    return RunState.CANCELLED if any_cancelled else RunState.SUCCESS


@dataclass(frozen=True)
class GraphPlan:
    """A spec's graph as the walkers use it; the same for every run of the spec."""

    #: Every upstream before its downstreams (ties in spec order).
    order: tuple[TaskSpec, ...]
    #: Task id -> its index in ``order``.
    position: Mapping[TaskId, int]
    #: Task id -> the tasks that require it.
    downstream: Mapping[TaskId, tuple[TaskId, ...]]
    #: Tasks whose trigger rule an upstream's SUCCESS can decide before all upstreams have
    #: ended (``all_failed``: skipped). For the others, only the last upstream to end or one
    #: that did not succeed can.
    decided_by_success: frozenset[TaskId]
    #: Task id -> how many tasks it requires.
    upstream_count: Mapping[TaskId, int]


# Plans are cached per spec object (specs are immutable); the weak reference drops the entry
# when the spec is collected, so a recycled id() can never return another spec's plan.
_PLANS: dict[int, tuple[weakref.ref[DagSpec], GraphPlan]] = {}


def graph_plan(spec: DagSpec) -> GraphPlan:
    """Computed once per spec object. Raises ``DagValidationError`` for an unknown upstream
    or a cycle (the loader rejects both; this guards hand-built specs)."""
    key = id(spec)
    hit = _PLANS.get(key)
    if hit is not None and hit[0]() is spec:
        return hit[1]
    plan = _plan(spec)
    _PLANS[key] = (weakref.ref(spec, lambda _ref: _PLANS.pop(key, None)), plan)
    return plan


def topological_order(spec: DagSpec) -> tuple[TaskSpec, ...]:
    """The spec's tasks, every upstream before its downstreams (ties in spec order)."""
    return graph_plan(spec).order


def _plan(spec: DagSpec) -> GraphPlan:
    by_id = {t.id: t for t in spec.tasks}
    indegree = {t.id: 0 for t in spec.tasks}
    downstream: dict[TaskId, list[TaskId]] = {t.id: [] for t in spec.tasks}
    for t in spec.tasks:
        for u in t.requires:
            if u not in by_id:
                raise DagValidationError(f"task {t.id!r} requires unknown task {u!r}", "tasks")
            downstream[u].append(t.id)
            indegree[t.id] += 1
    todo = deque(t.id for t in spec.tasks if indegree[t.id] == 0)
    order: list[TaskSpec] = []
    while todo:
        tid = todo.popleft()
        order.append(by_id[tid])
        for d in downstream[tid]:
            indegree[d] -= 1
            if indegree[d] == 0:
                todo.append(d)
    if len(order) != len(by_id):
        stuck = sorted(tid for tid, n in indegree.items() if n > 0)
        raise DagValidationError(f"cycle among tasks {', '.join(stuck)}", "tasks")
    return GraphPlan(
        order=tuple(order),
        position={t.id: i for i, t in enumerate(order)},
        downstream={tid: tuple(ds) for tid, ds in downstream.items()},
        decided_by_success=frozenset(t.id for t in spec.tasks if t.trigger_rule is TriggerRule.ALL_FAILED),
        upstream_count={t.id: len(t.requires) for t in spec.tasks},
    )
