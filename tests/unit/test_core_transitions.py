"""The task transition table: exhaustive, absorbing, and what each applied event records."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from kiok.core.states import TERMINAL_TASK_STATES, TaskRecord, TaskState
from kiok.core.transitions import (
    IGNORE,
    ILLEGAL,
    RETRY_OR_FAIL,
    TRANSITIONS,
    ReportVerdict,
    TaskEvent,
    TaskEventKind,
    Verdict,
    apply_task_event,
    report_verdict,
)
from kiok.errors import IllegalTransition

S = TaskState
E = TaskEventKind
ALL_CELLS = list(itertools.product(TaskState, TaskEventKind))


def test_every_cell_is_present() -> None:
    missing = [cell for cell in ALL_CELLS if cell not in TRANSITIONS]
    assert not missing, f"transition table has no rule for {missing}"
    assert len(TRANSITIONS) == len(ALL_CELLS)


@pytest.mark.parametrize("state", sorted(TERMINAL_TASK_STATES))
def test_terminal_states_are_absorbing(state: TaskState) -> None:
    """Every event but the master's explicit RERUN leaves a finished task alone."""
    for kind in TaskEventKind:
        if kind is E.RERUN:
            continue
        assert TRANSITIONS[(state, kind)] is IGNORE
        rec = TaskRecord(state=state, attempt=1)
        assert apply_task_event(rec, TaskEvent(kind, 5)) == (rec, Verdict.IGNORED)


@pytest.mark.parametrize(("state", "kind"), ALL_CELLS)
def test_apply_follows_the_table(state: TaskState, kind: TaskEventKind) -> None:
    rec = TaskRecord(state=state, attempt=1)
    rule = TRANSITIONS[(state, kind)]
    if rule is IGNORE:
        new, verdict = apply_task_event(rec, TaskEvent(kind, 5))
        assert new is rec and verdict is Verdict.IGNORED
    elif rule is ILLEGAL:
        with pytest.raises(IllegalTransition, match=f"{kind.value}.*{state.value}"):
            apply_task_event(rec, TaskEvent(kind, 5))
    elif rule is RETRY_OR_FAIL:
        assert apply_task_event(rec, TaskEvent(kind, 5, retry_at_ms=9))[0].state is S.RETRYING
        assert apply_task_event(rec, TaskEvent(kind, 5))[0].state is S.FAILED
    else:
        new, verdict = apply_task_event(rec, TaskEvent(kind, 5))
        assert (new.state, verdict) == (rule, Verdict.APPLIED)


def test_the_expected_shape_of_the_table() -> None:
    moves = {cell: rule for cell, rule in TRANSITIONS.items() if isinstance(rule, TaskState)}
    assert moves == {
        (S.PENDING, E.READY): S.QUEUED,
        (S.PENDING, E.SKIP): S.SKIPPED,
        (S.QUEUED, E.START): S.RUNNING,
        (S.RUNNING, E.SUCCEED): S.SUCCESS,
        (S.RUNNING, E.LOST): S.QUEUED,
        (S.RETRYING, E.RETRY_DUE): S.QUEUED,
        **{(s, E.CANCEL): S.CANCELLED for s in (S.PENDING, S.QUEUED, S.RUNNING, S.RETRYING)},
        **{(s, E.RERUN): S.PENDING for s in TERMINAL_TASK_STATES},
    }
    assert all(TRANSITIONS[(s, E.RERUN)] is ILLEGAL for s in TaskState if s not in TERMINAL_TASK_STATES)
    assert TRANSITIONS[(S.QUEUED, E.SKIP)] is ILLEGAL
    assert [c for c, r in TRANSITIONS.items() if r is RETRY_OR_FAIL] == [(S.RUNNING, E.FAIL)]


def _run(*events: TaskEvent, rec: TaskRecord | None = None) -> TaskRecord:
    rec = rec or TaskRecord()
    for ev in events:
        rec, verdict = apply_task_event(rec, ev)
        assert verdict is Verdict.APPLIED
    return rec


def test_start_begins_a_new_attempt_and_clears_the_last_outcome() -> None:
    failed = _run(
        TaskEvent(E.READY, 1),
        TaskEvent(E.START, 2, worker="w1"),
        TaskEvent(E.FAIL, 3, exit_code=1, error="boom", retry_at_ms=10),
    )
    assert failed == TaskRecord(S.RETRYING, 1, 2, 3, 1, "boom", "w1", 10)
    queued = _run(TaskEvent(E.RETRY_DUE, 10), rec=failed)
    assert (queued.state, queued.retry_at_ms, queued.error) == (S.QUEUED, None, "boom")
    again = _run(TaskEvent(E.START, 11, worker="w2"), rec=queued)
    assert again == TaskRecord(S.RUNNING, attempt=2, started_at_ms=11, worker="w2")
    done = _run(TaskEvent(E.SUCCEED, 20, exit_code=0), rec=again)
    assert done == TaskRecord(S.SUCCESS, 2, 11, 20, 0, None, "w2", None)


def test_fail_without_retry_left_is_final() -> None:
    rec = _run(TaskEvent(E.READY, 1), TaskEvent(E.START, 2), TaskEvent(E.FAIL, 3, exit_code=2))
    assert (rec.state, rec.attempt, rec.exit_code, rec.retry_at_ms) == (S.FAILED, 1, 2, None)


def test_lost_requeues_a_running_task_and_the_next_start_is_a_new_attempt() -> None:
    running = _run(TaskEvent(E.READY, 1), TaskEvent(E.START, 2, worker="w1"))
    lost = _run(TaskEvent(E.LOST, 7), rec=running)
    assert (lost.state, lost.attempt, lost.ended_at_ms, lost.error) == (S.QUEUED, 1, 7, "driver lost")
    assert _run(TaskEvent(E.START, 8), rec=lost).attempt == 2
    for state in (S.PENDING, S.QUEUED, S.RETRYING):
        rec = TaskRecord(state=state, attempt=1)
        assert apply_task_event(rec, TaskEvent(E.LOST, 9)) == (rec, Verdict.IGNORED)


@pytest.mark.parametrize("state", [S.PENDING, S.QUEUED, S.RUNNING, S.RETRYING])
def test_cancel_ends_any_live_task(state: TaskState) -> None:
    rec = TaskRecord(state=state, attempt=1, retry_at_ms=50, error="earlier")
    new = _run(TaskEvent(E.CANCEL, 30), rec=rec)
    assert (new.state, new.ended_at_ms, new.retry_at_ms, new.error) == (S.CANCELLED, 30, None, "earlier")


# --- report_verdict ---------------------------------------------------------------------------

A = ReportVerdict.ACCEPT
D = ReportVerdict.DUPLICATE
X = ReportVerdict.STALE


@pytest.mark.parametrize(
    ("stored", "reported", "expected"),
    [
        # Batched reports skip intermediate states.
        ((S.PENDING, 0), (S.RUNNING, 1), A),
        ((S.PENDING, 0), (S.SUCCESS, 1), A),
        ((S.QUEUED, 0), (S.RETRYING, 1), A),
        ((S.RUNNING, 1), (S.RUNNING, 3), A),
        ((S.RUNNING, 1), (S.QUEUED, 1), A),  # lost, not yet restarted
        ((S.RETRYING, 1), (S.QUEUED, 1), A),
        ((S.RETRYING, 1), (S.FAILED, 2), A),
        ((S.PENDING, 0), (S.QUEUED, 0), A),
        # Cancel and skip of a task that never started.
        ((S.PENDING, 0), (S.SKIPPED, 0), A),
        ((S.PENDING, 0), (S.CANCELLED, 0), A),
        ((S.QUEUED, 0), (S.SKIPPED, 0), A),
        ((S.QUEUED, 2), (S.CANCELLED, 2), A),
        # Replays.
        ((S.RUNNING, 1), (S.RUNNING, 1), D),
        ((S.SUCCESS, 1), (S.SUCCESS, 1), D),
        ((S.CANCELLED, 1), (S.CANCELLED, 1), D),
        # Older attempts and earlier states.
        ((S.RUNNING, 2), (S.FAILED, 1), X),
        ((S.QUEUED, 0), (S.PENDING, 0), X),
        ((S.QUEUED, 1), (S.RUNNING, 1), X),  # stored was already lost
        ((S.SUCCESS, 1), (S.RUNNING, 1), X),
        # Terminal stored records are final, even against a later attempt (master cancel).
        ((S.CANCELLED, 0), (S.RUNNING, 1), X),
        ((S.FAILED, 1), (S.SUCCESS, 2), X),
        # Records no table path can produce.
        ((S.RETRYING, 1), (S.SUCCESS, 1), X),
        ((S.PENDING, 0), (S.PENDING, 1), X),
        ((S.PENDING, 0), (S.SKIPPED, 1), X),
    ],
)
def test_report_verdict(
    stored: tuple[TaskState, int], reported: tuple[TaskState, int], expected: ReportVerdict
) -> None:
    verdict = report_verdict(TaskRecord(*stored), TaskRecord(*reported))
    assert verdict is expected


def test_a_state_change_keeps_every_field_it_does_not_set() -> None:
    # The transitions build records field by field; a field added to TaskRecord must be
    # carried there too, or it would be dropped on the next state change.
    rec = TaskRecord(
        state=TaskState.RETRYING,
        attempt=2,
        started_at_ms=10,
        ended_at_ms=20,
        exit_code=3,
        error="boom",
        worker="w",
        retry_at_ms=30,
        attempt_base=1,
    )
    assert {f.name for f in dataclasses.fields(TaskRecord)} == {
        "state",
        "attempt",
        "started_at_ms",
        "ended_at_ms",
        "exit_code",
        "error",
        "worker",
        "retry_at_ms",
        "attempt_base",
    }, "a new TaskRecord field: carry it in kiok.core.transitions._effects"
    queued, _ = apply_task_event(rec, TaskEvent(TaskEventKind.RETRY_DUE, 40))
    assert queued == dataclasses.replace(rec, state=TaskState.QUEUED, retry_at_ms=None)
    running = TaskRecord(
        state=TaskState.RUNNING, attempt=2, started_at_ms=10, worker="w", error="old", attempt_base=1
    )
    done, _ = apply_task_event(running, TaskEvent(TaskEventKind.SUCCEED, 50, exit_code=0))
    assert done == dataclasses.replace(running, state=TaskState.SUCCESS, ended_at_ms=50, exit_code=0)


def test_rerun_keeps_the_attempt_so_the_next_start_is_a_new_number() -> None:
    failed = TaskRecord(state=S.FAILED, attempt=2, started_at_ms=1, ended_at_ms=2, exit_code=1, error="boom")
    reset, verdict = apply_task_event(failed, TaskEvent(E.RERUN, 10))
    # The attempts before the re-run are its base: its retries count from there.
    assert (reset, verdict) == (TaskRecord(state=S.PENDING, attempt=2, attempt_base=2), Verdict.APPLIED)
    queued = apply_task_event(reset, TaskEvent(E.READY, 11))[0]
    started = apply_task_event(queued, TaskEvent(E.START, 12))[0]
    assert (started.attempt, started.attempt_base) == (3, 2)


def test_a_driver_report_can_never_reach_back_through_rerun() -> None:
    """RERUN is the master's: a driver's record of the same attempt cannot undo an end, and a
    re-run task's next attempt is accepted."""
    assert report_verdict(TaskRecord(S.QUEUED, 1), TaskRecord(S.PENDING, 1)) is ReportVerdict.STALE
    assert report_verdict(TaskRecord(S.RUNNING, 1), TaskRecord(S.PENDING, 2)) is ReportVerdict.STALE
    reset = TaskRecord(S.PENDING, 2)
    assert report_verdict(reset, TaskRecord(S.QUEUED, 2)) is ReportVerdict.ACCEPT
    assert report_verdict(reset, TaskRecord(S.RUNNING, 3)) is ReportVerdict.ACCEPT
    assert report_verdict(reset, TaskRecord(S.SUCCESS, 2)) is ReportVerdict.STALE
