"""The words the task and run logs use for an attempt that did not end on its own."""

from __future__ import annotations

from typing import Any

from kiok.core.interruption import (
    REVOKED_ERROR,
    RUN_CANCELLED,
    cancel_reason,
    interrupted_attempt,
    interrupted_lines,
    stopped_line,
)
from kiok.core.states import TaskRecord, TaskState
from kiok.core.transitions import TaskEvent, TaskEventKind, apply_task_event


def test_a_task_lost_with_its_driver_is_recognised_as_interrupted() -> None:
    running = TaskRecord(state=TaskState.RUNNING, attempt=2, worker="w1")
    lost, _ = apply_task_event(running, TaskEvent(TaskEventKind.LOST, 10))
    assert interrupted_attempt(lost) == 2  # the LOST transition's error is the one looked for
    assert interrupted_lines("t", 2, "w1", lost.error) == (
        "[kiok] attempt 2 interrupted: its worker w1 was lost; retried as attempt 3",
        "t attempt 2 interrupted (its worker w1 was lost); running it again as attempt 3",
    )


def test_a_task_whose_worker_was_revoked_says_so() -> None:
    running = TaskRecord(state=TaskState.RUNNING, attempt=1, worker="w2")
    lost, _ = apply_task_event(running, TaskEvent(TaskEventKind.LOST, 10, error=REVOKED_ERROR))
    assert (lost.error, interrupted_attempt(lost)) == (REVOKED_ERROR, 1)
    assert interrupted_lines("t1", 1, "w2", lost.error) == (
        "[kiok] attempt 1 interrupted: its worker w2 was revoked; retried as attempt 2",
        "t1 attempt 1 interrupted (its worker w2 was revoked); running it again as attempt 2",
    )


def test_a_retry_or_a_first_start_is_not_an_interruption() -> None:
    failed = TaskRecord(state=TaskState.QUEUED, attempt=1, worker="w1", exit_code=1, error="exit code 1")
    assert interrupted_attempt(failed) is None
    assert interrupted_attempt(TaskRecord(state=TaskState.QUEUED)) is None


def test_stopped_lines() -> None:
    kw: dict[str, Any] = {"timeout_s": 30.0, "grace_s": 0.5}
    assert stopped_line(1, timed_out=True, cancelled=None, process=True, **kw) == (
        "[kiok] attempt 1 timed out after 30s; process group stopped (SIGTERM, then SIGKILL after 0.5s)"
    )
    assert stopped_line(3, timed_out=False, cancelled=RUN_CANCELLED, process=False, **kw) == (
        "[kiok] attempt 3 cancelled: the run was cancelled; request abandoned"
    )
    assert stopped_line(1, timed_out=False, cancelled=None, process=True, **kw).startswith(
        "[kiok] attempt 1 stopped by its worker"
    )


def test_a_cancel_reason_names_who_cancelled_or_why_the_run_failed() -> None:
    assert cancel_reason("alice", None) == "cancelled by alice: the run was cancelled"
    assert cancel_reason(None, "run timed out after 10s") == "cancelled: run timed out after 10s"
    assert cancel_reason(None, None) == RUN_CANCELLED
    kw: dict[str, Any] = {"timeout_s": 30.0, "grace_s": 0.5}
    assert stopped_line(1, timed_out=False, cancelled=cancel_reason("alice", None), process=True, **kw) == (
        "[kiok] attempt 1 cancelled by alice: the run was cancelled; "
        "process group stopped (SIGTERM, then SIGKILL after 0.5s)"
    )
