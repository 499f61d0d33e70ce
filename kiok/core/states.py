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

# Wire keys of ``TaskRecord.to_dict``; append-only, never renamed (stored runs hold them).
_KEYS = (
    ("attempt", "attempt"),
    ("started_at_ms", "startedMs"),
    ("ended_at_ms", "endedMs"),
    ("exit_code", "exitCode"),
    ("error", "error"),
    ("worker", "worker"),
    ("retry_at_ms", "retryAtMs"),
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

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_TASK_STATES

    def to_dict(self) -> dict[str, Any]:
        """A msgpack/JSON friendly dict; ``None`` fields are left out to keep stored runs small."""
        d: dict[str, Any] = {"state": self.state.value}
        for attr, key in _KEYS:
            value = getattr(self, attr)
            if value is not None:
                d[key] = value
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskRecord:
        """Inverse of ``to_dict``; missing keys take their defaults, unknown keys are ignored
        (so an older node can read a record written by a newer one)."""
        return cls(
            state=TaskState(d.get("state", TaskState.PENDING.value)),
            attempt=int(d.get("attempt", 0)),
            started_at_ms=d.get("startedMs"),
            ended_at_ms=d.get("endedMs"),
            exit_code=d.get("exitCode"),
            error=d.get("error"),
            worker=d.get("worker"),
            retry_at_ms=d.get("retryAtMs"),
        )
