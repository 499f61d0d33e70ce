"""What the task and run logs say about an attempt that did not end on its own: timed out,
cancelled, or interrupted by the loss of its worker. Pure text decisions for the driver."""

from __future__ import annotations

from kiok.core.states import TaskRecord, TaskState

#: The error the LOST transition (``kiok.core.transitions``) leaves on a task whose driver died.
LOST_ERROR = "driver lost"
#: ...and on one whose driver's worker was revoked (``AssignRun.lost_error``).
REVOKED_ERROR = "driver lost: its worker was revoked"
#: Why a driver gives its run back (``Release.reason``, as a worker sends it) when tasks of
#: it may have been running: the worker shuts down, or the driver failed.
SHUTDOWN_REASON = "its worker shut down"
CRASH_REASON = "its driver crashed"
#: ...and the error those tasks are then left with (``ReleaseRun.lost_error``).
SHUTDOWN_ERROR = f"{LOST_ERROR}: {SHUTDOWN_REASON}"
CRASH_ERROR = f"{LOST_ERROR}: {CRASH_REASON}"

#: Each lost error, and how the next attempt's log says what became of the worker.
_FATES = {
    LOST_ERROR: "its worker {worker}was lost",
    REVOKED_ERROR: "its worker {worker}was revoked",
    SHUTDOWN_ERROR: "its worker {worker}shut down",
    CRASH_ERROR: "its driver {on}crashed",
}


def released_error(reason: str) -> str:
    """The error a released run's running tasks are left with: its reason's, when a worker
    gave one this version knows (any other text is the worker's, not the masters' to show)."""
    return {SHUTDOWN_REASON: SHUTDOWN_ERROR, CRASH_REASON: CRASH_ERROR}.get(reason, "")


def interrupted_attempt(rec: TaskRecord) -> int | None:
    """The attempt a lost driver interrupted, when ``rec`` (a task handed to a new driver) is
    queued again because of that; else None."""
    if rec.state is TaskState.QUEUED and rec.attempt >= 1 and rec.error in _FATES:
        return rec.attempt
    return None


def interrupted_lines(task_id: str, lost: int, worker: str | None, error: str | None) -> tuple[str, str]:
    """(task-log line, run-log event) for attempt ``lost`` interrupted on ``worker``, now run
    again as the next attempt; ``error``: the lost error it was left with (which says why)."""
    fate = _FATES.get(error or LOST_ERROR, _FATES[LOST_ERROR])
    where = fate.format(worker=f"{worker} " if worker else "", on=f"on worker {worker} " if worker else "")
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
