"""The task state machine, written as a table: the only place that says which task state
changes are legal. The driver steps records through ``apply_task_event``; the master judges
the driver's reported records with ``report_verdict``. Pure: no clock, no I/O.

Theory of operation
-------------------
Each cell of ``TRANSITIONS`` maps (state, event kind) to a target state, ``IGNORE`` (a
duplicate or late event that has already taken effect: the record is returned unchanged) or
``ILLEGAL`` (only our own bug can produce it: ``IllegalTransition`` is raised). The single
computed cell is RUNNING + FAIL: ``RETRY_OR_FAIL`` goes to RETRYING when the event carries
``retry_at_ms`` (the caller decided a retry is left, see ``kiok.core.retry``), else FAILED.
Terminal states ignore every event but RERUN. Only START changes the attempt number (+1)::

    PENDING ── READY ──► QUEUED ── START ──► RUNNING ── SUCCEED ──► SUCCESS
       │                  ▲  ▲                 │ │ │
       │ SKIP             │  └────── LOST ─────┘ │ └── FAIL, no retry left ──► FAILED
       ▼                  │                      │
    SKIPPED               │                      │ FAIL, retry left
                          │                      ▼
                          └──── RETRY_DUE ──── RETRYING

    CANCEL: any non-terminal state ──► CANCELLED      (terminal states ignore every event)
    RERUN:  any terminal state ──► PENDING            (non-terminal states: ILLEGAL)

LOST (the driver died) puts a RUNNING task back in the queue with the same attempt number,
so its next START is a new attempt. Reports are batched, so the master may see a record
several steps ahead of the one it stores; ``report_verdict`` accepts any record the table
can reach from the stored one and refuses (without raising) stale and duplicate ones.

RERUN is the master's alone (``POST /runs/{id}/rerun`` on a finished run): it puts a
terminal task back to PENDING keeping its attempt number, so the re-run's first START is a
new number (``KIOK_ATTEMPT`` never names two executions). No driver ever reports it, so it
is left out of what ``report_verdict`` considers reachable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import TypeAlias

from kiok.core.interruption import LOST_ERROR
from kiok.core.states import TERMINAL_TASK_STATES, TaskRecord, TaskState
from kiok.errors import IllegalTransition

__all__ = [
    "IGNORE",
    "ILLEGAL",
    "RETRY_OR_FAIL",
    "TRANSITIONS",
    "Marker",
    "ReportVerdict",
    "Rule",
    "TaskEvent",
    "TaskEventKind",
    "Verdict",
    "apply_task_event",
    "report_verdict",
]


class TaskEventKind(StrEnum):
    READY = "ready"
    START = "start"
    SUCCEED = "succeed"
    FAIL = "fail"
    RETRY_DUE = "retry_due"
    SKIP = "skip"
    CANCEL = "cancel"
    LOST = "lost"
    #: A finished run is re-run (master only): a terminal task goes back to PENDING.
    RERUN = "rerun"


@dataclass(frozen=True)
class TaskEvent:
    """Something that happened to one task at ``at_ms``. Fields an event does not carry
    leave the record's values alone (START clears the previous attempt's outcome)."""

    kind: TaskEventKind
    at_ms: int
    exit_code: int | None = None
    error: str | None = None
    #: START: the worker running the attempt.
    worker: str | None = None
    #: FAIL: when the next attempt is due; ``None`` means no retry is left (-> FAILED).
    retry_at_ms: int | None = None


class Marker(Enum):
    """Table cells that are not a target state."""

    IGNORE = "ignore"
    ILLEGAL = "illegal"
    RETRY_OR_FAIL = "retry_or_fail"


IGNORE = Marker.IGNORE
ILLEGAL = Marker.ILLEGAL
RETRY_OR_FAIL = Marker.RETRY_OR_FAIL

Rule: TypeAlias = TaskState | Marker

_S = TaskState
_E = TaskEventKind

TRANSITIONS: dict[tuple[TaskState, TaskEventKind], Rule] = {
    (_S.PENDING, _E.READY): _S.QUEUED,
    (_S.PENDING, _E.START): ILLEGAL,
    (_S.PENDING, _E.SUCCEED): ILLEGAL,
    (_S.PENDING, _E.FAIL): ILLEGAL,
    (_S.PENDING, _E.RETRY_DUE): ILLEGAL,
    (_S.PENDING, _E.SKIP): _S.SKIPPED,
    (_S.PENDING, _E.CANCEL): _S.CANCELLED,
    (_S.PENDING, _E.LOST): IGNORE,
    (_S.QUEUED, _E.READY): IGNORE,
    (_S.QUEUED, _E.START): _S.RUNNING,
    (_S.QUEUED, _E.SUCCEED): ILLEGAL,
    (_S.QUEUED, _E.FAIL): ILLEGAL,
    (_S.QUEUED, _E.RETRY_DUE): IGNORE,
    (_S.QUEUED, _E.SKIP): ILLEGAL,  # readiness is monotone: once ready, never skipped
    (_S.QUEUED, _E.CANCEL): _S.CANCELLED,
    (_S.QUEUED, _E.LOST): IGNORE,
    (_S.RUNNING, _E.READY): IGNORE,
    (_S.RUNNING, _E.START): ILLEGAL,  # would run the body twice
    (_S.RUNNING, _E.SUCCEED): _S.SUCCESS,
    (_S.RUNNING, _E.FAIL): RETRY_OR_FAIL,
    (_S.RUNNING, _E.RETRY_DUE): ILLEGAL,
    (_S.RUNNING, _E.SKIP): ILLEGAL,
    (_S.RUNNING, _E.CANCEL): _S.CANCELLED,
    (_S.RUNNING, _E.LOST): _S.QUEUED,
    (_S.RETRYING, _E.READY): IGNORE,
    (_S.RETRYING, _E.START): ILLEGAL,  # RETRY_DUE queues it first
    (_S.RETRYING, _E.SUCCEED): ILLEGAL,
    (_S.RETRYING, _E.FAIL): ILLEGAL,
    (_S.RETRYING, _E.RETRY_DUE): _S.QUEUED,
    (_S.RETRYING, _E.SKIP): ILLEGAL,
    (_S.RETRYING, _E.CANCEL): _S.CANCELLED,
    (_S.RETRYING, _E.LOST): IGNORE,
    # Only a finished task can be re-run: the run must have ended first.
    **{(s, _E.RERUN): ILLEGAL for s in (_S.PENDING, _S.QUEUED, _S.RUNNING, _S.RETRYING)},
    # Terminal states are absorbing, except for an explicit re-run.
    **{
        (s, k): (_S.PENDING if k is _E.RERUN else IGNORE)
        for s in sorted(TERMINAL_TASK_STATES)
        for k in TaskEventKind
    },
}


class Verdict(StrEnum):
    APPLIED = "applied"
    IGNORED = "ignored"


def apply_task_event(rec: TaskRecord, ev: TaskEvent) -> tuple[TaskRecord, Verdict]:
    """The record after ``ev``; an ignored event returns ``rec`` itself.

    Raises ``IllegalTransition`` for an ILLEGAL cell.
    """
    rule = TRANSITIONS[(rec.state, ev.kind)]
    if rule is IGNORE:
        return rec, Verdict.IGNORED
    if rule is ILLEGAL:
        raise IllegalTransition(f"task event {ev.kind.value!r} is illegal in state {rec.state.value!r}")
    if rule is RETRY_OR_FAIL:
        target = TaskState.RETRYING if ev.retry_at_ms is not None else TaskState.FAILED
    else:
        assert isinstance(rule, TaskState)
        target = rule
    return _effects(rec, ev, target), Verdict.APPLIED


def _effects(rec: TaskRecord, ev: TaskEvent, target: TaskState) -> TaskRecord:
    retry_at = ev.retry_at_ms if target is TaskState.RETRYING else None
    if ev.kind is TaskEventKind.START:
        return TaskRecord(
            state=target,
            attempt=rec.attempt + 1,
            started_at_ms=ev.at_ms,
            worker=ev.worker,
            attempt_base=rec.attempt_base,
        )
    if ev.kind is TaskEventKind.RERUN:  # a fresh start that remembers how many attempts ran
        return TaskRecord(state=target, attempt=rec.attempt, attempt_base=rec.attempt)
    # Records are built field by field: ``dataclasses.replace`` costs several times more, and
    # every state change of every task comes through here.
    if ev.kind in (TaskEventKind.READY, TaskEventKind.RETRY_DUE):
        return TaskRecord(
            state=target,
            attempt=rec.attempt,
            started_at_ms=rec.started_at_ms,
            ended_at_ms=rec.ended_at_ms,
            exit_code=rec.exit_code,
            error=rec.error,
            worker=rec.worker,
            attempt_base=rec.attempt_base,
        )
    error = ev.error if ev.error is not None else rec.error
    if ev.kind is TaskEventKind.LOST and ev.error is None:
        error = LOST_ERROR
    return TaskRecord(
        state=target,
        attempt=rec.attempt,
        started_at_ms=rec.started_at_ms,
        ended_at_ms=ev.at_ms,
        exit_code=ev.exit_code if ev.exit_code is not None else rec.exit_code,
        error=error,
        worker=rec.worker,
        retry_at_ms=retry_at,
        attempt_base=rec.attempt_base,
    )


class ReportVerdict(StrEnum):
    #: The reported record is ahead of the stored one: store it.
    ACCEPT = "accept"
    #: Same attempt and state as stored (a replayed report): nothing to do.
    DUPLICATE = "duplicate"
    #: Older than, or incompatible with, what is stored: drop it and count it.
    STALE = "stale"


def _targets(state: TaskState, kinds: Iterable[TaskEventKind]) -> set[TaskState]:
    out: set[TaskState] = set()
    for kind in kinds:
        rule = TRANSITIONS[(state, kind)]
        if rule is RETRY_OR_FAIL:
            out |= {TaskState.RETRYING, TaskState.FAILED}
        elif isinstance(rule, TaskState):
            out.add(rule)
    return out


def _closure(start: TaskState, kinds: tuple[TaskEventKind, ...]) -> frozenset[TaskState]:
    """States reachable from ``start`` in one or more steps through ``kinds``."""
    seen: set[TaskState] = set()
    todo = list(_targets(start, kinds))
    while todo:
        s = todo.pop()
        if s not in seen:
            seen.add(s)
            todo.extend(_targets(s, kinds))
    return frozenset(seen)


#: What a driver's records can go through: everything but the master's own RERUN.
_DRIVER_KINDS = tuple(k for k in TaskEventKind if k is not TaskEventKind.RERUN)
_SAME_ATTEMPT_KINDS = tuple(k for k in _DRIVER_KINDS if k is not TaskEventKind.START)

#: States a record can move to without starting another attempt (derived from the table).
#: Plus QUEUED -> SKIPPED: the master accepts a skip for a task it still has queued.
_AHEAD_SAME_ATTEMPT: dict[TaskState, frozenset[TaskState]] = {
    s: _closure(s, _SAME_ATTEMPT_KINDS) | ({TaskState.SKIPPED} if s is TaskState.QUEUED else set())
    for s in TaskState
}

#: States an attempt can be in once started (RUNNING and everything reachable from it).
_STARTED_STATES = _closure(TaskState.RUNNING, _DRIVER_KINDS) | {TaskState.RUNNING}


def report_verdict(stored: TaskRecord, reported: TaskRecord) -> ReportVerdict:
    """Judge a driver's reported record against the stored one (master side).

    Accepts a later attempt in any state a started attempt can be in, or the same attempt in
    a state reachable from the stored one (intermediate states may be skipped: reports are
    batched). A terminal stored record is never replaced; the master may have cancelled it.
    """
    if reported.attempt == stored.attempt and reported.state is stored.state:
        return ReportVerdict.DUPLICATE
    if stored.is_terminal or reported.attempt < stored.attempt:
        return ReportVerdict.STALE
    if reported.attempt > stored.attempt:
        ok = reported.state in _STARTED_STATES
    else:
        ok = reported.state in _AHEAD_SAME_ATTEMPT[stored.state]
    return ReportVerdict.ACCEPT if ok else ReportVerdict.STALE
