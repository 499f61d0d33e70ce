"""Run and task states, and the per-task record that the driver keeps and the store persists.

Only data lives here; what may change a record is ``kiok.core.transitions``. A record
describes the current (or last) attempt of one task in one run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["TERMINAL_RUN_STATES", "TERMINAL_TASK_STATES", "RunState", "TaskRecord", "TaskState"]


class RunState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL_RUN_STATES: frozenset[RunState] = frozenset({RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED})


class TaskState(StrEnum):
    PENDING = "PENDING"
    #: Ready (its upstreams allow it), waiting for a task slot.
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    #: The last attempt failed; the next one is due at ``retry_at_ms``.
    RETRYING = "RETRYING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    #: Its trigger rule can no longer be met by its upstreams.
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"


TERMINAL_TASK_STATES: frozenset[TaskState] = frozenset(
    {TaskState.SUCCESS, TaskState.FAILED, TaskState.SKIPPED, TaskState.CANCELLED}
)


@dataclass(frozen=True)
class TaskRecord:
    """One task of one run. Times are epoch milliseconds supplied by the caller."""

    state: TaskState = TaskState.PENDING
    #: Number of the current/last attempt: 0 before the first start, the first attempt is 1.
    attempt: int = 0
    started_at_ms: int | None = None
    ended_at_ms: int | None = None
    exit_code: int | None = None
    error: str | None = None
    worker: str | None = None
    #: When the next attempt is due; set only while ``RETRYING``.
    retry_at_ms: int | None = None
    #: The attempts run before the task's last re-run (0: never re-run): a re-run keeps
    #: attempt numbers going but gets its retries again, counted from here (as Airflow's
    #: clear gives them back).
    attempt_base: int = 0

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_TASK_STATES

    def to_dict(self) -> dict[str, Any]:
        """A msgpack/JSON friendly dict; ``None`` fields are left out to keep stored runs small.
        Its keys are never renamed (stored runs hold them). Spelled out field by field: every
        state change of every task comes through here."""
        d: dict[str, Any] = {"state": str(self.state), "attempt": self.attempt}
        if self.started_at_ms is not None:
            d["startedMs"] = self.started_at_ms
        if self.ended_at_ms is not None:
            d["endedMs"] = self.ended_at_ms
        if self.exit_code is not None:
            d["exitCode"] = self.exit_code
        if self.error is not None:
            d["error"] = self.error
        if self.worker is not None:
            d["worker"] = self.worker
        if self.retry_at_ms is not None:
            d["retryAtMs"] = self.retry_at_ms
        if self.attempt_base:
            d["attemptBase"] = self.attempt_base
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskRecord:
        """Inverse of ``to_dict``; missing keys take their defaults, unknown keys are ignored
        (so an older node can read a record written by a newer one). An unknown state is a
        ``ValueError``."""
        value = d.get("state", "PENDING")
        state = _TASK_STATE_OF.get(value) if isinstance(value, str) else None
        if state is None:
            raise ValueError(f"{d.get('state')!r} is not a task state")
        return cls(
            state,
            int(d.get("attempt", 0)),
            d.get("startedMs"),
            d.get("endedMs"),
            d.get("exitCode"),
            d.get("error"),
            d.get("worker"),
            d.get("retryAtMs"),
            int(d.get("attemptBase", 0)),
        )


#: State by its value, for ``from_dict`` (calling ``TaskState(value)`` costs ten times more).
_TASK_STATE_OF: dict[str, TaskState] = {s.value: s for s in TaskState}
