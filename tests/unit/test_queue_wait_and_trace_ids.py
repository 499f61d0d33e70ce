"""The pure parts of issue 17 §4's queue wait and trace ids: when a task became ready (by
trigger rule, retry, the run's start) and the W3C ids every master and worker derive alike."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kiok.core.queue_wait import queue_wait_ms, started_attempt
from kiok.core.readiness import upstream_verdict
from kiok.core.states import TaskRecord, TaskState
from kiok.core.tracecontext import (
    attempt_traceparent,
    ended_attempt,
    parse_traceparent,
    run_trace,
)
from kiok.dag.spec import TaskSpec, TriggerRule
from kiok.ids import TaskId
from kiok.master.metrics import InFlightRecords
from kiok.store.effects import Effects

PENDING = TaskRecord()


def ended(state: TaskState, at: int) -> TaskRecord:
    return TaskRecord(state=state, attempt=1, started_at_ms=at - 5, ended_at_ms=at)


def task(*requires: str, rule: TriggerRule = TriggerRule.ALL_SUCCESS) -> TaskSpec:
    return TaskSpec(
        id=TaskId("t"), script="true", requires=tuple(TaskId(r) for r in requires), trigger_rule=rule
    )


def test_a_root_task_waits_from_the_run_start() -> None:
    assert queue_wait_ms(task(), PENDING, 1_500, {}, floor_ms=1_000) == 500


def test_all_success_is_ready_when_the_last_upstream_ends() -> None:
    ups = {TaskId("a"): ended(TaskState.SUCCESS, 2_000), TaskId("b"): ended(TaskState.SUCCESS, 3_000)}
    assert queue_wait_ms(task("a", "b"), PENDING, 3_250, ups, floor_ms=1_000) == 250


def test_one_failed_is_ready_at_the_first_failure() -> None:
    ups = {TaskId("a"): ended(TaskState.FAILED, 2_000), TaskId("b"): ended(TaskState.SUCCESS, 3_000)}
    assert queue_wait_ms(task("a", "b", rule=TriggerRule.ONE_FAILED), PENDING, 3_100, ups, 0) == 1_100


def test_an_upstream_without_an_end_or_a_reported_queue_is_not_guessed() -> None:
    running = {TaskId("a"): TaskRecord(state=TaskState.RUNNING, attempt=1, started_at_ms=10)}
    assert queue_wait_ms(task("a"), PENDING, 50, running, 0) is None
    queued = TaskRecord(state=TaskState.QUEUED, attempt=1, started_at_ms=1, ended_at_ms=2)
    assert queue_wait_ms(task(), queued, 50, {}, 0) is None


def test_a_retry_waits_from_its_due_time_and_never_before_the_floor() -> None:
    retrying = TaskRecord(
        state=TaskState.RETRYING, attempt=1, started_at_ms=1, ended_at_ms=2, retry_at_ms=900
    )
    assert queue_wait_ms(task(), retrying, 1_000, {}, floor_ms=0) == 100
    assert queue_wait_ms(task(), retrying, 1_000, {}, floor_ms=950) == 50  # re-assigned later
    assert queue_wait_ms(task(), retrying, 800, {}, floor_ms=0) == 0  # clocks apart: never negative


def test_a_start_is_seen_once_even_when_the_outcome_replaced_running() -> None:
    running = TaskRecord(state=TaskState.RUNNING, attempt=1, started_at_ms=10)
    done = TaskRecord(state=TaskState.SUCCESS, attempt=1, started_at_ms=10, ended_at_ms=20)
    assert started_attempt(PENDING, running) and started_attempt(PENDING, done)
    assert not started_attempt(running, done)
    assert ended_attempt(running, done) and ended_attempt(PENDING, done)
    assert not ended_attempt(done, done) and not ended_attempt(PENDING, running)


def test_trace_ids_follow_the_trigger_request_or_the_run_id() -> None:
    client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    rt = run_trace("d-1-1", client)
    assert (rt.trace_id, rt.parent_span_id) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert run_trace("d-1-1", client) == rt  # every master derives the same run span
    scheduled = run_trace("d-1-2", None)
    assert scheduled.parent_span_id is None and scheduled.trace_id != rt.trace_id
    assert parse_traceparent(scheduled.traceparent) == (scheduled.trace_id, scheduled.span_id)
    tp = attempt_traceparent(rt.traceparent, "a", 1)
    assert tp is not None and tp.startswith(f"00-{rt.trace_id}-") and tp.endswith("-01")
    assert tp != attempt_traceparent(rt.traceparent, "a", 2) != attempt_traceparent(rt.traceparent, "b", 1)
    for bad in (
        "",
        "garbage",
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    ):
        assert parse_traceparent(bad) is None
    assert attempt_traceparent("nonsense", "a", 1) is None


def test_an_offer_carries_the_run_traceparent_only_when_tracing() -> None:
    from kiok.protocol.messages import Assignment, Fence
    from kiok.protocol.to_worker import Offer

    plain = Assignment("r", "d", {}, {}, Fence(1, 1), {}, 0)
    assert "traceparent" not in Offer(plain).to_wire()  # frames unchanged without tracing
    traced = Assignment("r", "d", {}, {}, Fence(1, 1), {}, 0, traceparent=run_trace("r", None).traceparent)
    assert Offer.from_wire(Offer(traced).to_wire()).assignment.traceparent == traced.traceparent


_OUTCOMES = st.sampled_from([TaskState.SUCCESS, TaskState.FAILED, TaskState.SKIPPED, TaskState.CANCELLED])


@given(
    st.sampled_from(TriggerRule),
    st.lists(st.tuples(_OUTCOMES, st.integers(1, 50)), min_size=1, max_size=12),
)
def test_the_ready_moment_of_a_fan_in_is_the_first_prefix_whose_verdict_is_ready(
    rule: TriggerRule, outcomes: list[tuple[TaskState, int]]
) -> None:
    """Against the definition, one verdict over every upstream's state per revealed outcome
    (what the function did before it only looked at the distinct outcomes)."""
    ups = {TaskId(f"u{i}"): ended(state, at) for i, (state, at) in enumerate(outcomes)}
    ordered = sorted(ups.values(), key=lambda r: r.ended_at_ms or 0)
    expected = None
    for i, rec in enumerate(ordered):
        states = [r.state for r in ordered[: i + 1]] + [TaskState.PENDING] * (len(ordered) - i - 1)
        if upstream_verdict(rule, states) == "ready":
            expected = rec.ended_at_ms
            break
    wait = queue_wait_ms(task(*ups, rule=rule), PENDING, 1_000, ups, floor_ms=0)
    assert wait == (None if expected is None else 1_000 - expected)


def test_upstream_records_are_held_for_runs_seen_created_until_they_finish() -> None:
    """The queue waits' upstream records come from the writes the command log reports, only
    for runs whose every write this master has seen, and go with the run."""
    held = InFlightRecords(max_runs=2)
    a1, a2 = ended(TaskState.SUCCESS, 10), ended(TaskState.FAILED, 20)
    fx = Effects(runs_created=["r1", "r2", "r3"])  # r3: beyond max_runs
    for run in ("r1", "r0", "r3"):  # r0: created before this master started
        fx.task_written(run, "a", 1, a1)
    held.take(fx)
    assert held.records("r1") == {"a": a1}
    assert held.records("r2") == {}
    assert held.records("r0") is None and held.records("r3") is None
    later = Effects()
    later.task_written("r1", "a", 2, a2)
    held.take(later)
    assert held.records("r1") == {"a": a2}
    gone = Effects(runs_finished=["r1"], runs_deleted=["r2"])
    held.take(gone)
    assert held.records("r1") == {"a": a2}  # until the batch's queue waits are observed
    held.forget(gone)
    assert held.records("r1") is None and held.records("r2") is None
    held.take(Effects(runs_created=["r4"]))
    held.take(Effects(restored="b1"))
    assert held.records("r4") is None
