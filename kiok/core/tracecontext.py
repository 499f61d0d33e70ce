"""The identities of a run's trace, as plain strings (W3C Trace Context), with no OTel import.

A run's spans are written by whichever master leads when they end, and a task's process
learns its parent before that span exists: so every id is either stored with the run or
derived from what every master and worker already knows. The run span's id comes from the
run id, an attempt span's from the run span, the task id and the attempt number. A run
triggered through the API keeps the trigger request's trace id and span (its parent); a
scheduled run's trace id is derived from its run id (it has no request to join).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from kiok.core.states import TaskRecord

__all__ = [
    "RunTrace",
    "attempt_span_id",
    "attempt_traceparent",
    "ended_attempt",
    "parse_traceparent",
    "run_trace",
]

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def _derive(nbytes: int, *parts: str) -> str:
    """A stable non-zero id in hex: the same on every master and worker."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=nbytes).hexdigest()
    return digest if digest.strip("0") else "1".rjust(nbytes * 2, "0")


def parse_traceparent(text: str | None) -> tuple[str, str] | None:
    """(trace id, span id) of a W3C ``traceparent`` of version 00; None when absent or not one
    (an invalid one starts a new trace rather than failing the request)."""
    if not text:
        return None
    m = _TRACEPARENT.fullmatch(text.strip().lower())
    if m is None or m.group(1) == _ZERO_TRACE or m.group(2) == _ZERO_SPAN:
        return None
    return m.group(1), m.group(2)


@dataclass(frozen=True)
class RunTrace:
    """Where a run's spans go: its trace, the run span's id and the run span's parent (the
    trigger request's span; None for a scheduled run, whose run span is the trace's root)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None

    @property
    def traceparent(self) -> str:
        """The run span as a ``traceparent`` (sampled): what a driver is given."""
        return f"00-{self.trace_id}-{self.span_id}-01"


def run_trace(run_id: str, trigger_traceparent: str | None) -> RunTrace:
    """The run's trace from the trigger request's ``traceparent`` stored with the run, if any."""
    parent = parse_traceparent(trigger_traceparent)
    span_id = _derive(8, "run", run_id)
    if parent is None:
        return RunTrace(_derive(16, "trace", run_id), span_id, None)
    return RunTrace(parent[0], span_id, parent[1])


def attempt_span_id(run_span_id: str, task_id: str, attempt: int) -> str:
    return _derive(8, "attempt", run_span_id, task_id, str(attempt))


def attempt_traceparent(run_traceparent: str, task_id: str, attempt: int) -> str | None:
    """The ``TRACEPARENT`` a task's process gets: its attempt span, so the task's own spans
    are that span's children. None when the run's ``traceparent`` is not a valid one."""
    parsed = parse_traceparent(run_traceparent)
    if parsed is None:
        return None
    trace_id, run_span = parsed
    return f"00-{trace_id}-{attempt_span_id(run_span, task_id, attempt)}-01"


def ended_attempt(before: TaskRecord, after: TaskRecord) -> bool:
    """Whether an accepted report ends an attempt that had started: the record has both
    times and is not the same ended attempt reported again. A report may skip RUNNING (the
    driver's linger replaces it by the outcome), so the start is read from the outcome."""
    if after.started_at_ms is None or after.ended_at_ms is None:
        return False
    return not (before.attempt == after.attempt and before.ended_at_ms == after.ended_at_ms)
