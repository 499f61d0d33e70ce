"""What the task and run logs say about an attempt that did not end on its own: timed out,
cancelled, or interrupted by the loss of its worker. Pure text decisions for the driver."""

from __future__ import annotations

from kiok.core.states import TaskRecord, TaskState

#: The error the LOST transition (``kiok.core.transitions``) leaves on a task whose driver died.
LOST_ERROR = "driver lost"
#: ...and on one whose driver's worker was revoked (``AssignRun.lost_error``).
REVOKED_ERROR = "driver lost: its worker was revoked"


def interrupted_attempt(rec: TaskRecord) -> int | None:
    """The attempt a lost driver interrupted, when ``rec`` (a task handed to a new driver) is
    queued again because of that; else None."""
    if rec.state is TaskState.QUEUED and rec.attempt >= 1 and rec.error in (LOST_ERROR, REVOKED_ERROR):
        return rec.attempt
    return None


def interrupted_lines(
    task_id: str, lost: int, worker: str | None, *, revoked: bool = False
) -> tuple[str, str]:
    """(task-log line, run-log event) for attempt ``lost`` interrupted on ``worker``, now run
    again as the next attempt; ``revoked``: that worker was revoked (not merely lost)."""
    fate = "was revoked" if revoked else "was lost"
    where = f"its worker {worker} {fate}" if worker else f"its worker {fate}"
    return (
        f"[kiok] attempt {lost} interrupted: {where}; retried as attempt {lost + 1}",
        f"{task_id} attempt {lost} interrupted ({where}); running it again as attempt {lost + 1}",
    )


#: Why a driver stops its attempts when the master's CANCEL says nothing more (an older master,
#: or a run handed over already cancelled).
RUN_CANCELLED = "cancelled: the run was cancelled"


def cancel_reason(by: str | None, fail_reason: str | None) -> str:
    """What stopped a run's attempts, as the task log says it after "attempt N": the user who
    cancelled the run, or why the leader failed it (its run timeout)."""
    if fail_reason:
        return f"cancelled: {fail_reason}"
    if by:
        return f"cancelled by {by}: the run was cancelled"
    return RUN_CANCELLED


def stopped_line(
    attempt: int,
    *,
    timed_out: bool,
    cancelled: str | None,
    timeout_s: float,
    grace_s: float,
    process: bool,
    shutdown: bool = False,
) -> str:
    """The task log's last line for an attempt that timed out or was stopped: ``cancelled``
    is the ``cancel_reason`` when the run was cancelled, else its worker stopped it
    (``shutdown``: because the worker shut down; the run goes back to the masters)."""
    if timed_out:
        what = f"[kiok] attempt {attempt} timed out after {timeout_s:g}s"
    elif cancelled:
        what = f"[kiok] attempt {attempt} {cancelled}"
    elif shutdown:
        what = f"[kiok] attempt {attempt} stopped by its worker, which is shutting down"
    else:
        what = f"[kiok] attempt {attempt} stopped by its worker"
    if process:
        return f"{what}; process group stopped (SIGTERM, then SIGKILL after {grace_s:g}s)"
    return f"{what}; request abandoned"
