"""A Hypothesis state machine that drives random DAGs through random driver events.

It plays the driver (start, succeed, fail, time passing, losing the driver, cancelling) and
the master (taking batched reports), and checks after every step that the core keeps its
promises: terminal states absorb, attempts never go back, nothing is queued or run before
its trigger rule allows it, ``advance`` reaches a fixpoint without deadlock, and the run ends
exactly when all its tasks do.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kiok.core.frontier import Frontier
from kiok.core.readiness import UNSTARTED, Advance, advance, upstream_verdict
from kiok.core.retry import fail_event
from kiok.core.states import TERMINAL_TASK_STATES, RunState, TaskRecord, TaskState
from kiok.core.transitions import (
    ReportVerdict,
    TaskEvent,
    TaskEventKind,
    Verdict,
    apply_task_event,
    report_verdict,
)
from kiok.dag.spec import DagSpec, TaskSpec, TriggerRule
from kiok.ids import DagId, TaskId

S = TaskState
E = TaskEventKind
CAP_MS = 1_000
LIVE = (S.QUEUED, S.RUNNING, S.RETRYING)


@st.composite
def dags(draw: st.DrawFn) -> DagSpec:
    tasks: list[TaskSpec] = []
    for i in range(draw(st.integers(1, 7))):
        ups = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        tasks.append(
            TaskSpec(
                id=TaskId(f"t{i}"),
                requires=tuple(TaskId(f"t{u}") for u in sorted(ups)),
                trigger_rule=draw(st.sampled_from(TriggerRule)),
                retries=draw(st.integers(0, 2)),
                retry_delay_ms=draw(st.sampled_from([0, 50, 500])),
                retry_exponential_backoff=draw(st.booleans()),
            )
        )
    # Shuffle so the spec order is not already topological.
    return DagSpec(id=DagId("d"), tasks=tuple(draw(st.permutations(tasks))))


def reference_verdict(rule: TriggerRule, ups: list[TaskState]) -> str:
    """DESIGN.md §3's trigger rules, restated with sets as an independent oracle."""
    seen, done = set(ups), {s for s in ups if s in TERMINAL_TASK_STATES}
    all_done = len(done) == len(seen)
    ready, skip = {
        TriggerRule.ALL_SUCCESS: (seen <= {S.SUCCESS}, bool(done - {S.SUCCESS})),
        TriggerRule.ALL_DONE: (all_done, False),
        TriggerRule.ONE_FAILED: (not ups or S.FAILED in seen, all_done and S.FAILED not in seen),
        TriggerRule.ALL_FAILED: (seen <= {S.FAILED}, bool(done - {S.FAILED})),
    }[rule]
    return "ready" if ready else "skip" if skip else "wait"


class DriverMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.spec = DagSpec(id=DagId("empty"), tasks=())
        self.tasks: dict[TaskId, TaskRecord] = {}
        self.now = 0
        self.cancelled = False
        self.adv: Advance | None = None
        #: Every distinct record each task has had, and which one the master stores.
        self.history: dict[TaskId, list[TaskRecord]] = {}
        self.stored: dict[TaskId, int] = {}
        self.master_cancelled: dict[TaskId, TaskRecord] = {}
        #: The driver's incremental twin of ``advance``, fed the same changes.
        self.frontier: Frontier | None = None

    # --- helpers ------------------------------------------------------------------------------

    def verdict(self, tasks: dict[TaskId, TaskRecord], tid: TaskId) -> str:
        task = self.spec.task(tid)
        ups = [tasks.get(u, UNSTARTED).state for u in task.requires]
        expected = reference_verdict(task.trigger_rule, ups)
        assert upstream_verdict(task.trigger_rule, ups) == expected, (task.trigger_rule, ups)
        return expected

    def commit(self, new: dict[TaskId, TaskRecord]) -> None:
        for tid, rec in new.items():
            old = self.tasks.get(tid, UNSTARTED)
            if old.is_terminal:
                assert rec == old, f"{tid} left terminal {old.state}"
            assert rec.attempt >= old.attempt, f"{tid} attempt went back"
            hist = self.history.setdefault(tid, [UNSTARTED])
            if rec != hist[-1]:
                hist.append(rec)
            if self.frontier is not None:
                self.frontier.set(tid, rec)
        self.tasks = new

    def event(self, tid: TaskId, ev: TaskEvent) -> None:
        new, verdict = apply_task_event(self.tasks[tid], ev)
        assert verdict is Verdict.APPLIED
        self.commit({**self.tasks, tid: new})
        self.step_driver()

    def step_driver(self) -> None:
        """The driver's walk, replayed change by change to check each at its own moment."""
        adv = advance(self.spec, self.tasks, self.now, cancelled=self.cancelled)
        if self.frontier is None:
            self.frontier = Frontier(self.spec, self.tasks)
        inc = self.frontier.advance(self.now, cancelled=self.cancelled)
        assert dict(inc.tasks) == dict(adv.tasks), "Frontier disagrees with advance"
        assert sorted(inc.changed) == sorted(adv.changed)
        assert (inc.next_wakeup_ms, inc.run_state) == (adv.next_wakeup_ms, adv.run_state)
        cur = {tid: self.tasks.get(tid, UNSTARTED) for tid in self.spec.task_ids}
        for tid in adv.changed:
            old, new = cur[tid], adv.tasks[tid]
            if self.cancelled:
                assert (old.state, new.state) in {(s, S.CANCELLED) for s in (S.PENDING, S.QUEUED, S.RETRYING)}
            elif old.state is S.PENDING:
                expected = {S.QUEUED: "ready", S.SKIPPED: "skip"}[new.state]
                assert self.verdict(cur, tid) == expected, f"{tid} {new.state} too early"
            else:
                assert (old.state, new.state) == (S.RETRYING, S.QUEUED)
                assert old.retry_at_ms is None or old.retry_at_ms <= self.now
            cur[tid] = new
        assert cur == dict(adv.tasks), "a change is missing from Advance.changed"
        self.commit(dict(adv.tasks))
        self.adv = adv

    def pick(self, data: st.DataObject, state: TaskState) -> TaskId:
        return data.draw(st.sampled_from(sorted(t for t, r in self.tasks.items() if r.state is state)))

    def has(self, state: TaskState) -> bool:
        return any(r.state is state for r in self.tasks.values())

    # --- rules --------------------------------------------------------------------------------

    @initialize(spec=dags())
    def setup(self, spec: DagSpec) -> None:
        self.spec = spec
        self.step_driver()
        self.stored = dict.fromkeys(self.spec.task_ids, 0)

    @precondition(lambda self: self.has(S.QUEUED))
    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        self.event(self.pick(data, S.QUEUED), TaskEvent(E.START, self.now, worker="w"))

    @precondition(lambda self: self.has(S.RUNNING))
    @rule(data=st.data())
    def succeed(self, data: st.DataObject) -> None:
        self.event(self.pick(data, S.RUNNING), TaskEvent(E.SUCCEED, self.now, exit_code=0))

    @precondition(lambda self: self.has(S.RUNNING))
    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        tid = self.pick(data, S.RUNNING)
        ev = fail_event(self.spec.task(tid), self.tasks[tid].attempt, self.now, cap_ms=CAP_MS, exit_code=1)
        self.event(tid, ev)

    @precondition(lambda self: self.cancelled and self.has(S.RUNNING))
    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        self.event(self.pick(data, S.RUNNING), TaskEvent(E.CANCEL, self.now))

    @rule(ms=st.sampled_from([0, 1, 10, 100, 1_000]))
    def tick(self, ms: int) -> None:
        self.now += ms
        self.step_driver()

    @rule(dice=st.integers(0, 3))
    def lose_driver(self, dice: int) -> None:
        if dice:
            return
        ev = TaskEvent(E.LOST, self.now)
        before = self.tasks
        self.commit({tid: apply_task_event(rec, ev)[0] for tid, rec in before.items()})
        for tid, rec in before.items():
            after = self.tasks[tid]
            if rec.state is S.RUNNING:
                assert (after.state, after.attempt) == (S.QUEUED, rec.attempt), "lost task not requeued"
            else:
                assert after is rec
        self.step_driver()

    @rule(dice=st.integers(0, 15))
    def cancel(self, dice: int) -> None:
        # Rarely: a cancelled run has little left to explore.
        if dice == 0:
            self.cancelled = True
            self.step_driver()

    @rule(data=st.data(), dice=st.integers(0, 3))
    def master_cancels(self, data: st.DataObject, dice: int) -> None:
        """The master ends its stored record itself (run cancel without the driver's word)."""
        if dice:
            return
        tid = data.draw(st.sampled_from(self.spec.task_ids))
        rec = self.history[tid][self.stored[tid]]
        self.master_cancelled[tid], _ = apply_task_event(rec, TaskEvent(E.CANCEL, self.now))

    @rule(data=st.data())
    def report(self, data: st.DataObject) -> None:
        """The master takes a batch of the driver's latest records; older ones are refused."""
        batch = data.draw(st.lists(st.sampled_from(self.spec.task_ids), unique=True))
        for tid in batch:
            hist, stored = self.history[tid], self.stored[tid]
            latest = len(hist) - 1
            final = self.master_cancelled.get(tid)
            if final is not None:
                got = report_verdict(final, hist[latest])
                assert got is not ReportVerdict.ACCEPT, f"{final} replaced by {hist[latest]}"
                continue
            got = report_verdict(hist[stored], hist[latest])
            assert got is (ReportVerdict.DUPLICATE if latest == stored else ReportVerdict.ACCEPT), (
                f"{hist[stored]} -> {hist[latest]}: {got}"
            )
            for older in hist[:latest]:
                assert report_verdict(hist[latest], older) is ReportVerdict.STALE, (
                    f"{hist[latest]} <- {older}"
                )
            self.stored[tid] = latest

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def trigger_rules_hold(self) -> None:
        for tid, rec in self.tasks.items():
            if rec.state in (S.QUEUED, S.RUNNING, S.RETRYING, S.SUCCESS, S.FAILED):
                assert self.verdict(self.tasks, tid) == "ready", (
                    f"{tid} {rec.state} before its upstreams allow"
                )
            elif rec.state is S.SKIPPED:
                assert self.verdict(self.tasks, tid) == "skip"
            elif rec.state is S.PENDING:
                assert not self.cancelled and self.verdict(self.tasks, tid) == "wait", "advance stopped early"

    @invariant()
    def run_ends_exactly_when_all_tasks_do(self) -> None:
        if self.adv is None:
            return
        states = [r.state for r in self.tasks.values()]
        all_done = all(s in TERMINAL_TASK_STATES for s in states)
        assert (self.adv.run_state is not None) is all_done
        if all_done:
            expected = (
                RunState.CANCELLED
                if self.cancelled
                else RunState.FAILED
                if S.FAILED in states
                else RunState.CANCELLED
                if S.CANCELLED in states
                else RunState.SUCCESS
            )
            assert self.adv.run_state is expected
        # No deadlock: something is always live (or running, when cancelled) until the end.
        live = (S.RUNNING,) if self.cancelled else LIVE
        assert all_done or any(s in live for s in states)

    @invariant()
    def wakeup_is_the_earliest_pending_retry(self) -> None:
        if self.adv is None:
            return
        due = [r.retry_at_ms for r in self.tasks.values() if r.state is S.RETRYING]
        assert all(d is not None and d > self.now for d in due)
        assert self.adv.next_wakeup_ms == min((d for d in due if d is not None), default=None)


DriverMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_driver_machine: Any = DriverMachine.TestCase
