"""Retry and timeout decisions for one task, as plain arithmetic over the ``TaskSpec``.

The caller (driver) turns a failed attempt into a FAIL event with ``fail_event``, so the
transition table itself never needs the spec. Attempt numbers start at 1.
"""

from __future__ import annotations

from kiok.core.transitions import TaskEvent, TaskEventKind
from kiok.dag.spec import TaskSpec

__all__ = ["fail_event", "retries_left", "retry_delay_ms", "timeout_ms_for"]

#: Past this many doublings any sane cap has been reached; stops 2**attempt from growing
#: without bound for a task that has failed thousands of times.
_MAX_DOUBLINGS = 62


def retry_delay_ms(task: TaskSpec, failed_attempt: int, cap_ms: int) -> int:
    """Delay before the attempt after ``failed_attempt``.

    ``retry_delay_ms * 2**(failed_attempt-1)`` with exponential backoff, else constant; either
    way capped by the task's ``max_retry_delay_ms``, or ``cap_ms`` (the cluster's
    ``kiok.scheduler.retry.max.delay.ms``) when the task sets none.
    """
    cap = max(0, task.max_retry_delay_ms if task.max_retry_delay_ms is not None else cap_ms)
    base = max(0, task.retry_delay_ms)
    if not task.retry_exponential_backoff:
        return min(base, cap)
    doublings = max(0, failed_attempt - 1)
    if base == 0:
        return 0
    if doublings > _MAX_DOUBLINGS:
        return cap
    return min(base << doublings, cap)


def retries_left(task: TaskSpec, attempt: int) -> bool:
    """Whether another attempt may follow ``attempt``: ``retries=2`` allows attempts 1..3."""
    return attempt < task.retries + 1


def fail_event(
    task: TaskSpec,
    attempt: int,
    at_ms: int,
    *,
    cap_ms: int,
    exit_code: int | None = None,
    error: str | None = None,
) -> TaskEvent:
    """The FAIL event for ``attempt`` ending at ``at_ms``, carrying the retry decision:
    ``retry_at_ms`` is set when a retry is left (-> RETRYING), else ``None`` (-> FAILED)."""
    retry_at = at_ms + retry_delay_ms(task, attempt, cap_ms) if retries_left(task, attempt) else None
    return TaskEvent(TaskEventKind.FAIL, at_ms, exit_code=exit_code, error=error, retry_at_ms=retry_at)


def timeout_ms_for(task: TaskSpec, dag_default_ms: int | None, cluster_default_ms: int) -> int:
    """Task ``timeout``, else the DAG's ``default_timeout``, else the cluster default."""
    if task.timeout_ms is not None:
        return task.timeout_ms
    if dag_default_ms is not None:
        return dag_default_ms
    return cluster_default_ms
