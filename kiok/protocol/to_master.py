"""Messages a worker sends to the master (OFFER_REPLY is in ``messages``: standalone uses it
too). Each checks its fields in ``from_wire``; policy (is this worker admitted, is this the
run's driver under this fence) is the master's, not this module's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from kiok.protocol import fields as f
from kiok.protocol.kinds import Kind
from kiok.protocol.messages import Claim, EmptyMessage, Fence, Message, claims_from_wire, opt_fence

#: Task slots a worker may declare.
MAX_SLOTS = 100_000


#: The largest HELLO a master reads: it comes before authentication, so it must stay small
#: (every connection waiting for its hello may hold this much).
HELLO_MAX_BYTES = 64 * 1024
#: What of a HELLO the runs it claims may take; a worker holding more claims the rest in its
#: first HEARTBEAT (``Hello.more_runs``).
HELLO_RUNS_BYTES = HELLO_MAX_BYTES // 2

#: A HELLO capability: the worker wants each HEARTBEAT answered (``Kind.HEARTBEAT_ACK``), so
#: that it can tell a master gone silent (frozen, or its host gone without a word).
KEEPALIVE = "keepalive"


@dataclass(frozen=True)
class Hello(Message):
    """HELLO: the first frame of a connection. It authenticates with ``credential`` or, on a
    worker's first start, ``join_token``; ``runs`` are the runs it holds (kept if still its).
    ``task_isolation`` and ``status_url`` came later (None/"" from older workers);
    ``capabilities`` name what this worker understands beyond version 1 (``KEEPALIVE``).
    ``more_runs``: ``runs`` are only the first of the runs it holds (they fit in
    ``HELLO_RUNS_BYTES``); its first HEARTBEAT names them all, and until then the master takes
    none of its runs from it. An older master ignores it (and reassigns the runs not named),
    and ``permits`` too (it counts the permits of running attempts from 0 again)."""

    KIND: ClassVar[Kind] = Kind.HELLO

    worker: str
    labels: tuple[str, ...] = ()
    slots: int = 1
    runs: tuple[Claim, ...] = ()
    capabilities: tuple[str, ...] = ()
    task_isolation: str | None = None
    status_url: str = ""
    credential: str | None = None
    join_token: str | None = None
    more_runs: bool = False
    #: Global task permits its running attempts hold, granted over earlier connections (a
    #: reconnect, a new leader): the master counts them against the cap at once.
    permits: int = 0

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "worker": self.worker,
            "labels": list(self.labels),
            "slots": self.slots,
            "runs": [c.to_wire() for c in self.runs],
            "capabilities": list(self.capabilities),
        }
        if self.task_isolation is not None:
            out["taskIsolation"] = self.task_isolation
        if self.status_url:
            out["statusUrl"] = self.status_url
        if self.credential is not None:
            out["credential"] = self.credential
        if self.join_token is not None:
            out["joinToken"] = self.join_token
        if self.more_runs:
            out["moreRuns"] = True
        if self.permits:
            out["permits"] = self.permits
        return out

    @classmethod
    def from_wire(cls, m: Mapping[str, Any]) -> Self:
        kind = cls.KIND.value
        slots = f.opt_integer(m, kind, "slots", 1, lo=1, hi=MAX_SLOTS)
        assert slots is not None
        return cls(
            worker=f.text(m, kind, "worker"),
            labels=f.texts(m, kind, "labels"),
            slots=slots,
            runs=claims_from_wire(m, kind, "runs"),
            capabilities=f.texts(m, kind, "capabilities"),
            task_isolation=f.opt_text(m, kind, "taskIsolation", max_len=f.ID_MAX),
            status_url=f.opt_text(m, kind, "statusUrl") or "",
            credential=f.opt_text(m, kind, "credential"),
            join_token=f.opt_text(m, kind, "joinToken"),
            more_runs=f.flag(m, kind, "moreRuns"),
            permits=f.opt_integer(m, kind, "permits", 0, lo=0, hi=slots) or 0,
            request=cls.request_of(m),
        )


@dataclass(frozen=True)
class Heartbeat(Message):
    """HEARTBEAT: free slots, whether draining, and the runs held (from which the master
    learns a run has no driver any more; None: the worker does not say). ``leaving``: the
    worker's goodbye, its last frame before it closes the connection at shutdown, holding no
    run any more: the master drops it at once instead of keeping it for the heartbeat
    timeout (sent only when true; a master that does not know it ignores it)."""

    KIND: ClassVar[Kind] = Kind.HEARTBEAT

    free: int
    draining: bool = False
    runs: tuple[Claim, ...] | None = None
    leaving: bool = False

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"free": self.free, "draining": self.draining}
        if self.runs is not None:
            out["runs"] = [c.to_wire() for c in self.runs]
        if self.leaving:
            out["leaving"] = True
        return out

    @classmethod
    def from_wire(cls, m: Mapping[str, Any]) -> Self:
        kind = cls.KIND.value
        return cls(
            f.integer(m, kind, "free"),
            f.flag(m, kind, "draining"),
            None if m.get("runs") is None else claims_from_wire(m, kind, "runs"),
            f.flag(m, kind, "leaving"),
            request=cls.request_of(m),
        )


@dataclass(frozen=True)
class Report(Message):
    """REPORT: task records of a run under a fence. ``request`` > 0: a terminal report kept
    in the worker's outbox until acknowledged; < 0: attempt starts awaiting their commit;
    0: progress, never acknowledged."""

    KIND: ClassVar[Kind] = Kind.REPORT

    run_id: str
    fence: Fence
    tasks: dict[str, dict[str, Any]]

    def to_wire(self) -> dict[str, Any]:
        return {"run": self.run_id, **self.fence.to_wire(), "tasks": self.tasks}

    @classmethod
    def from_wire(cls, m: Mapping[str, Any]) -> Self:
        kind = cls.KIND.value
        return cls(
            f.text(m, kind, "run"),
            Fence.from_wire(m, kind),
            f.task_records(m, kind, "tasks"),
            request=cls.request_of(m),
        )


@dataclass(frozen=True)
class Log(Message):
    """LOG: bytes a task wrote, at ``offset`` in the driver's stream of that task (stored
    once however often sent). ``fence`` is None only from workers older than fenced logs
    (refused by the master); ``request`` 0 for batches replayed from the outbox."""

    KIND: ClassVar[Kind] = Kind.LOG

    run_id: str
    fence: Fence | None
    task_id: str
    data: bytes
    offset: int | None = None
    final: bool = False

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run": self.run_id}
        if self.fence is not None:
            out.update(self.fence.to_wire())
        out.update(task=self.task_id, data=self.data)
        if self.offset is not None:
            out["offset"] = self.offset
        out["final"] = self.final
        return out

    @classmethod
    def from_wire(cls, m: Mapping[str, Any]) -> Self:
        kind = cls.KIND.value
        return cls(
            f.text(m, kind, "run"),
            opt_fence(m, kind),
            f.text(m, kind, "task"),
            f.blob(m, kind, "data"),
            f.opt_integer(m, kind, "offset", lo=0),
            f.flag(m, kind, "final"),
            request=cls.request_of(m),
        )


@dataclass(frozen=True)
class Release(Message):
    """RELEASE: the driver gives its run back (e.g. it crashed); the run is assigned again."""

    KIND: ClassVar[Kind] = Kind.RELEASE

    run_id: str
    fence: Fence
    reason: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"run": self.run_id, **self.fence.to_wire(), "reason": self.reason}

    @classmethod
    def from_wire(cls, m: Mapping[str, Any]) -> Self:
        kind = cls.KIND.value
        return cls(
            f.text(m, kind, "run"),
            Fence.from_wire(m, kind, term_default=0),
            f.opt_text(m, kind, "reason") or "",
            request=cls.request_of(m),
        )


@dataclass(frozen=True)
class Permit(EmptyMessage):
    """PERMIT: one more task body may start? Answered by PERMIT_GRANT with this ``request``
    (``kiok.scheduler.max.global.concurrency``)."""

    KIND: ClassVar[Kind] = Kind.PERMIT


@dataclass(frozen=True)
class PermitFree(EmptyMessage):
    """PERMIT_FREE: a task body that held a permit ended."""

    KIND: ClassVar[Kind] = Kind.PERMIT_FREE
