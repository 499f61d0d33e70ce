"""Messages between a worker and its task spawner process (``kiok.worker.spawner``).

Both ends are the same installation, started together, so the protocol is private: msgpack
arrays ``[kind, *fields]`` back to back on one Unix socket pair (msgpack's streaming
unpacker finds the boundaries). The spawner opens with ``Hello`` carrying ``VERSION``; a
worker that reads another version stops using that spawner.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any

VERSION = 4


class Kind(IntEnum):
    HELLO = 0
    START = 1
    STOP = 2
    STARTED = 3
    OUTPUT = 4
    EXITED = 5
    FAILED = 6
    TEMPLATE = 7
    NOTICE = 8


@dataclass(frozen=True, slots=True)
class Hello:
    """Spawner -> worker, first: the spawner is ready."""

    version: int
    pid: int


@dataclass(frozen=True, slots=True)
class Start:
    """Worker -> spawner: run ``argv`` in ``cwd`` (created if missing) with ``env`` added to
    the spawner's own environment, in a new session, stdin closed, stdout and stderr merged,
    and ``script`` (when not None) readable at file descriptor 3 (``/dev/fd/3``): a script
    is never an argument (``/proc/<pid>/cmdline`` is world-readable) nor a file on disk.
    Stop it (SIGTERM to its group, ``grace_s``, SIGKILL) after ``timeout_s``. With ``fork``
    (a python task: ``argv`` starts ``[<python>, ...]``), a spawner with a python
    template of that interpreter forks the template instead (``kiok.worker.forkserver``).
    ``uid``: the attempt user it runs as (``kiok.worker.attempt_ids``), for a spawner started
    with attempt users; None for one that runs tasks as its own user."""

    id: int
    argv: list[str]
    cwd: str
    env: dict[str, str]
    timeout_s: float
    grace_s: float
    script: str | None
    fork: bool = False
    uid: int | None = None


@dataclass(frozen=True, slots=True)
class Stop:
    """Worker -> spawner: stop attempt ``id`` like a timeout would, reported as stopped."""

    id: int


@dataclass(frozen=True, slots=True)
class Started:
    """Spawner -> worker: attempt ``id`` runs as process (and process group) ``pid``."""

    id: int
    pid: int


@dataclass(frozen=True, slots=True)
class Output:
    """Spawner -> worker: the next bytes attempt ``id`` wrote."""

    id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Exited:
    """Spawner -> worker: attempt ``id`` ended, after its last ``Output``; its working
    directory has been emptied and nothing of its process group is left."""

    id: int
    exit_code: int
    timed_out: bool
    stopped: bool
    #: Set when how it ended is unknown (its python template died under it).
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """Spawner -> worker: attempt ``id`` could not start (``errno``, ``message``)."""

    id: int
    errno: int
    message: str
    filename: str | None


@dataclass(frozen=True, slots=True)
class Template:
    """Worker -> spawner, after ``Hello``: keep a python template of ``python`` with the
    modules ``preload`` imported, replaced after ``max_tasks`` forks (and when a later
    ``Template`` names another interpreter or other modules)."""

    python: str
    preload: list[str]
    max_tasks: int


@dataclass(frozen=True, slots=True)
class Notice:
    """Spawner -> worker: what the operator must hear of, once (the worker logs it as an
    error; ``warning``: a documented fallback, not a fault: as a warning)."""

    message: str
    warning: bool = False


Message = Hello | Start | Stop | Started | Output | Exited | Failed | Template | Notice

_KIND_OF: dict[type[Any], Kind] = {
    Hello: Kind.HELLO,
    Start: Kind.START,
    Stop: Kind.STOP,
    Started: Kind.STARTED,
    Output: Kind.OUTPUT,
    Exited: Kind.EXITED,
    Failed: Kind.FAILED,
    Template: Kind.TEMPLATE,
    Notice: Kind.NOTICE,
}
_CLASS_OF: dict[int, type[Any]] = {kind: cls for cls, kind in _KIND_OF.items()}
_FIELDS: dict[type[Any], tuple[str, ...]] = {cls: tuple(f.name for f in fields(cls)) for cls in _KIND_OF}


def to_wire(msg: Message) -> list[Any]:
    return [_KIND_OF[type(msg)], *[getattr(msg, name) for name in _FIELDS[type(msg)]]]


def from_wire(raw: Any) -> Message:
    """The message in ``raw``; ``ValueError`` for anything that is not one."""
    if not isinstance(raw, list) or not raw or raw[0] not in _CLASS_OF:
        raise ValueError(f"not a spawner message: {raw!r:.80}")
    try:
        msg: Message = _CLASS_OF[raw[0]](*raw[1:])
    except TypeError as e:
        raise ValueError(f"malformed spawner message: {e}") from None
    return msg


__all__ = [
    "VERSION",
    "Exited",
    "Failed",
    "Hello",
    "Kind",
    "Message",
    "Notice",
    "Output",
    "Start",
    "Started",
    "Stop",
    "Template",
]
