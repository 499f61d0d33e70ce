"""``Frontier``: the incremental twin of ``readiness.advance`` for the driver's hot path.

``advance`` re-examines every task on every call, and each PENDING task looks at every one
of its upstreams: fine for a snapshot, quadratic for a driver that calls it after each of
500 fan-out completions. A ``Frontier`` keeps, per task, how many upstreams have finished,
succeeded and failed, so a trigger rule is decided in O(1); and it re-examines only the
tasks a change can affect (the changed task and its direct downstreams), in topological
order. It is pure (no clock, no I/O) and a property test holds it to ``advance``'s results
for every sequence of events.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from types import MappingProxyType

from kiok.core.readiness import (
    QUEUED_FIRST,
    UNSTARTED,
    Advance,
    UpstreamVerdict,
    graph_plan,
    topological_order,
)
from kiok.core.states import TERMINAL_TASK_STATES, RunState, TaskRecord, TaskState
from kiok.core.transitions import TaskEvent, TaskEventKind, Verdict, apply_task_event
from kiok.dag.spec import DagSpec, TriggerRule
from kiok.ids import TaskId

_S = TaskState


def verdict_from_counts(
    rule: TriggerRule, ups: int, done: int, succeeded: int, failed: int
) -> UpstreamVerdict:
    """``upstream_verdict`` from counts of upstreams that are terminal, SUCCESS and FAILED."""
    if rule is TriggerRule.ALL_SUCCESS:
        return "skip" if done > succeeded else "ready" if done == ups else "wait"
    if rule is TriggerRule.ALL_DONE:
        return "ready" if done == ups else "wait"
    if rule is TriggerRule.ONE_FAILED:
        return "ready" if failed or not ups else "skip" if done == ups else "wait"
    if rule is TriggerRule.ALL_FAILED:
        return "skip" if done > failed else "ready" if done == ups else "wait"
    raise AssertionError(f"unknown trigger rule {rule!r}")  # pragma: no cover


class Frontier:
    def __init__(self, spec: DagSpec, tasks: Mapping[TaskId, TaskRecord]) -> None:
        plan = graph_plan(spec)
        order = plan.order
        self._spec = spec
        self._pos = plan.position
        self._down = plan.downstream
        self._decided_by_success = plan.decided_by_success
        self._upstream_count = plan.upstream_count
        self._tasks: dict[TaskId, TaskRecord] = dict(tasks)
        # [terminal, succeeded, failed] upstream counts per task.
        self._counts = {t.id: [0, 0, 0] for t in order}
        self._open = 0
        self._failed = self._cancelled = 0
        self._retrying: set[TaskId] = set()
        self._dirty: list[int] = []
        self._queued: set[TaskId] = set()
        for t in order:
            rec = self._tasks.setdefault(t.id, UNSTARTED)
            self._count(t.id, rec, +1)
            self._mark(t.id)

    @property
    def tasks(self) -> Mapping[TaskId, TaskRecord]:
        return MappingProxyType(self._tasks)

    def _count(self, tid: TaskId, rec: TaskRecord, sign: int) -> None:
        """Add (+1) or remove (-1) ``rec``'s contribution to the counters."""
        state = rec.state
        if state in TERMINAL_TASK_STATES:
            for d in self._down[tid]:
                c = self._counts[d]
                c[0] += sign
                c[1] += sign * (state is _S.SUCCESS)
                c[2] += sign * (state is _S.FAILED)
            self._failed += sign * (state is _S.FAILED)
            self._cancelled += sign * (state is _S.CANCELLED)
        else:
            self._open += sign
        if state is _S.RETRYING:
            (self._retrying.add if sign > 0 else self._retrying.discard)(tid)

    def _mark(self, tid: TaskId) -> None:
        if tid not in self._queued:
            self._queued.add(tid)
            heapq.heappush(self._dirty, self._pos[tid])

    def set(self, tid: TaskId, rec: TaskRecord) -> None:
        """Record a task's new state (from an attempt's start or end, a report, a loss).
        Ended tasks stay ended (the transition table's terminal states absorb)."""
        old = self._tasks[tid]
        if rec is old:  # identity, not equality: an equal record only costs a re-examination
            return
        self._tasks[tid] = rec
        if rec.state in TERMINAL_TASK_STATES and old.state not in TERMINAL_TASK_STATES:
            self._retrying.discard(tid)
            self._ended(tid, rec.state)
            return
        self._count(tid, old, -1)
        self._count(tid, rec, +1)
        if rec.state is _S.PENDING or rec.state is _S.RETRYING:  # the states advance acts on
            self._mark(tid)

    def _ended(self, tid: TaskId, state: TaskState) -> None:
        """``set`` for the change every task makes once, from open to ended.
        A downstream is looked at again only when this end can decide its trigger rule: 500
        completions into a 500-wide join need not check the join 500 times."""
        self._open -= 1
        ok = state is _S.SUCCESS
        failed = state is _S.FAILED
        if failed:
            self._failed += 1
        elif state is _S.CANCELLED:
            self._cancelled += 1
        counts, needed, decided = self._counts, self._upstream_count, self._decided_by_success
        for d in self._down[tid]:
            c = counts[d]
            c[0] += 1
            if ok:
                c[1] += 1
                if c[0] != needed[d] and d not in decided:
                    continue
            elif failed:
                c[2] += 1
            self._mark(d)

    def advance(self, now_ms: int, *, cancelled: bool = False) -> Advance:
        """Same contract as ``readiness.advance(spec, tasks, now_ms, cancelled=...)``."""
        changed: list[TaskId] = []

        def fire(tid: TaskId, kind: TaskEventKind) -> None:
            new, verdict = apply_task_event(self._tasks[tid], TaskEvent(kind, now_ms))
            if verdict is Verdict.APPLIED:
                self.set(tid, new)
                changed.append(tid)

        if cancelled:
            for t in topological_order(self._spec):
                state = self._tasks[t.id].state
                if state not in TERMINAL_TASK_STATES and state is not _S.RUNNING:
                    fire(t.id, TaskEventKind.CANCEL)
            self._dirty.clear()
            self._queued.clear()
        for tid in [t for t in self._retrying if (self._tasks[t].retry_at_ms or 0) <= now_ms]:
            self._mark(tid)
        order = topological_order(self._spec)
        while self._dirty:
            tid = order[heapq.heappop(self._dirty)].id
            self._queued.discard(tid)
            rec = self._tasks[tid]
            if rec.state is _S.PENDING:
                done, ok, failed = self._counts[tid]
                verdict = verdict_from_counts(
                    self._spec.task(tid).trigger_rule, self._upstream_count[tid], done, ok, failed
                )
                if verdict == "ready" and rec is UNSTARTED:
                    # The common case, spelled out: PENDING -> QUEUED changes no counter and
                    # marks nothing, and a 500-wide fan-out comes through here 500 times.
                    self._tasks[tid] = QUEUED_FIRST
                    changed.append(tid)
                elif verdict == "ready":
                    fire(tid, TaskEventKind.READY)
                elif verdict == "skip":
                    fire(tid, TaskEventKind.SKIP)
            elif rec.state is _S.RETRYING and (rec.retry_at_ms is None or rec.retry_at_ms <= now_ms):
                fire(tid, TaskEventKind.RETRY_DUE)
        wakeup = min((self._tasks[t].retry_at_ms or 0 for t in self._retrying), default=None)
        return Advance(self.tasks, tuple(changed), wakeup, self._outcome(cancelled))

    def _outcome(self, cancelled: bool) -> RunState | None:
        if self._open:
            return None
        if cancelled:
            return RunState.CANCELLED
        if self._failed:
            return RunState.FAILED
        return RunState.CANCELLED if self._cancelled else RunState.SUCCESS
