"""Messages the master sends to a worker. Each checks its fields in ``from_wire``; what the
worker does with them (abandon a run, start a driver) is the worker's, not this module's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from kiok.errors import ProtocolError
from kiok.protocol import fields as f
from kiok.protocol.kinds import Kind
from kiok.protocol.messages import (
    Assignment,
    Claim,
    EmptyMessage,
    Fence,
    Message,
    claims_from_wire,
    opt_fence,
)
from kiok.security.kms import Keyring

#: The data key under which a worker's outbox is encrypted.
OUTBOX_KEY = "joblog-encryption"
_KEY_BYTES = 32
_MAX_KEY_VERSIONS = 1000


@dataclass(frozen=True)
class OutboxKeys:
    """The keys a worker encrypts its outbox with (every version; ``current`` for writes)."""

    current: int
    versions: tuple[tuple[int, bytes], ...]

    @classmethod
    def of(cls, ring: Keyring) -> OutboxKeys:
        return cls(ring.current[OUTBOX_KEY], tuple(sorted(ring.versions[OUTBOX_KEY].items())))

    def keyring(self) -> Keyring:
        return Keyring({OUTBOX_KEY: dict(self.versions)}, {OUTBOX_KEY: self.current})

    def to_wire(self) -> dict[str, Any]:
        return {"current": self.current, "versions": [[v, k] for v, k in self.versions]}

    @classmethod
    def from_wire(cls, value: object, kind: str) -> OutboxKeys:
        m = f.check_mapping(value, kind, "outboxKeys")
        current = f.integer(m, kind, "current", lo=0)
        versions = []
        for item in f.items(m, kind, "versions", required=True)[:_MAX_KEY_VERSIONS]:
            if (
                not isinstance(item, list)
                or len(item) != 2
                or not isinstance(item[0], int)
                or isinstance(item[0], bool)
                or not isinstance(item[1], bytes)
            ):
                raise ProtocolError(f"{kind}: field 'outboxKeys' missing or of the wrong type")
            versions.append((item[0], item[1]))
        if current not in dict(versions) or any(len(k) != _KEY_BYTES for _, k in versions):
            raise ProtocolError(f"{kind}: field 'outboxKeys' is inconsistent")
        return cls(current, tuple(versions))


@dataclass(frozen=True)
class Welcome(Message):
    """WELCOME: the worker is admitted. ``credential`` only when a join token was redeemed;
    ``outbox_keys`` when the masters encrypt at rest (always, in a cluster); ``keepalive``
    when this master answers each HEARTBEAT (``HeartbeatAck``; false from older masters)."""

    KIND: ClassVar[Kind] = Kind.WELCOME

    worker: str
    term: int
    heartbeat_interval_ms: int | None = None
    heartbeat_timeout_ms: int | None = None
    outbox_keys: OutboxKeys | None = None
    credential: str | None = None
    keepalive: bool = False

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"worker": self.worker, "term": self.term}
        if self.keepalive:
            out["keepalive"] = True
        if self.heartbeat_interval_ms is not None:
            out["heartbeatIntervalMs"] = self.heartbeat_interval_ms
        if self.heartbeat_timeout_ms is not None:
            out["heartbeatTimeoutMs"] = self.heartbeat_timeout_ms
        if self.outbox_keys is not None:
            out["outboxKeys"] = self.outbox_keys.to_wire()
        if self.credential is not None:
            out["credential"] = self.credential
        return out

    @classmethod
    def from_wire(cls, m: Mapping[str, Any]) -> Self:
        kind = cls.KIND.value
        keys = m.get("outboxKeys")
        return cls(
            f.text(m, kind, "worker"),
            f.integer(m, kind, "term", lo=0),
            f.opt_integer(m, kind, "heartbeatIntervalMs", lo=1),
            f.opt_integer(m, kind, "heartbeatTimeoutMs", lo=1),
            None if keys is None else OutboxKeys.from_wire(keys, kind),
            f.opt_text(m, kind, "credential"),
            f.flag(m, kind, "keepalive"),
            request=cls.request_of(m),
        )


@dataclass(frozen=True)
class HeartbeatAck(EmptyMessage):
    """HEARTBEAT_ACK: the master is alive and reading (see ``Kind.HEARTBEAT_ACK``)."""

    KIND: ClassVar[Kind] = Kind.HEARTBEAT_ACK


@dataclass(frozen=True)
class Refused(Message):
    """REFUSED: the connection is turned away (then closed). ``code`` is a ``Refusal`` value
    (kept as text: a newer master may send one this worker does not know); ``leader`` is
    where the leader is, when a master that does not lead knows it."""

    KIND: ClassVar[Kind] = Kind.REFUSED

    code: str
    reason: str = ""
    leader: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "reason": self.reason}
        if self.leader:
            out["leader"] = self.leader
        return out

    @classmethod
    def from_wire(cls, m: Mapping[str, Any]) -> Self:
        kind = cls.KIND.value
        return cls(
            f.text(m, kind, "code"),
            f.opt_text(m, kind, "reason") or "",
            f.opt_text(m, kind, "leader", max_len=f.ID_MAX) or None,
            request=cls.request_of(m),
        )


@dataclass(frozen=True)
class Offer(Message):
    """OFFER: a whole run for the worker to drive; answered by OFFER_REPLY with ``request``."""

    KIND: ClassVar[Kind] = Kind.OFFER

    assignment: Assignment

    def to_wire(self) -> dict[str, Any]:
        a = self.assignment
        m = {
            "run": a.run_id,
            "dag": a.dag_id,
            "spec": a.spec,
            "args": a.args,
            **a.fence.to_wire(),
            "tasks": a.tasks,
            "created": a.created_ms,
            "scheduled": a.scheduled_ms,
            "cancel": a.cancel,
            "secrets": a.secrets,
        }
        if a.traceparent is not None:  # only when tracing: the frames are otherwise unchanged
            m["traceparent"] = a.traceparent
        return m

    @classmethod
    def from_wire(cls, m: Mapping[str, Any]) -> Self:
        kind = cls.KIND.value
        assignment = Assignment(
            run_id=f.text(m, kind, "run"),
            dag_id=f.text(m, kind, "dag"),
            spec=f.mapping(m, kind, "spec"),
            args=f.mapping(m, kind, "args"),
            fence=Fence.from_wire(m, kind),
            tasks=f.records(m, kind, "tasks"),
            created_ms=f.integer(m, kind, "created"),
            scheduled_ms=f.opt_integer(m, kind, "scheduled"),
            cancel=f.flag(m, kind, "cancel"),
            secrets=f.records(m, kind, "secrets", required=False),
            traceparent=f.opt_text(m, kind, "traceparent", max_len=64),
        )
        return cls(assignment, request=cls.request_of(m))


@dataclass(frozen=True)
class ReportAck(Message):
    """REPORT_ACK: the REPORT with id ``request`` was committed, or refused for good
    (``fenced``: the worker no longer drives that run under that fence and stops it)."""

    KIND: ClassVar[Kind] = Kind.REPORT_ACK

    run_id: str
    fence: Fence | None
    fenced: bool = False

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run": self.run_id}
        if self.fence is not None:
            out.update(self.fence.to_wire())
        out["fenced"] = self.fenced
        return out

    @classmethod
    def from_wire(cls, m: Mapping[str, Any]) -> Self:
        kind = cls.KIND.value
        return cls(
            f.text(m, kind, "run"),
            opt_fence(m, kind),
            f.flag(m, kind, "fenced"),
            request=cls.request_of(m),
        )


@dataclass(frozen=True)
class LogAck(Message):
    """LOG_ACK: the LOG with id ``request`` is stored, or refused for good (``fenced``)."""

    KIND: ClassVar[Kind] = Kind.LOG_ACK

    run_id: str
    fenced: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {"run": self.run_id, "fenced": True} if self.fenced else {"run": self.run_id}

    @classmethod
    def from_wire(cls, m: Mapping[str, Any]) -> Self:
        kind = cls.KIND.value
        return cls(f.text(m, kind, "run"), f.flag(m, kind, "fenced"), request=cls.request_of(m))


@dataclass(frozen=True)
class Cancel(Message):
    """CANCEL: the run was cancelled; its driver stops its tasks. ``reason`` (newer masters;
    absent, the frame is as before) is what each stopped task's log says after "attempt N",
    e.g. "cancelled by alice: the run was cancelled"."""

    KIND: ClassVar[Kind] = Kind.CANCEL

    run_id: str
    reason: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run": self.run_id}
        if self.reason is not None:
            out["reason"] = self.reason
        return out

    @classmethod
    def from_wire(cls, m: Mapping[str, Any]) -> Self:
        kind = cls.KIND.value
        return cls(f.text(m, kind, "run"), f.opt_text(m, kind, "reason"), request=cls.request_of(m))


@dataclass(frozen=True)
class Abandon(Message):
    """ABANDON: runs this worker claimed but no longer owns. ``claims`` (newer masters) name
    the fence each was claimed under: only the driver holding that fence stops, a newer one
    of the same run goes on. Older masters send ``runs`` alone (None claims)."""

    KIND: ClassVar[Kind] = Kind.ABANDON

    runs: tuple[str, ...]
    claims: tuple[Claim, ...] | None = None

    @classmethod
    def of(cls, claims: tuple[Claim, ...]) -> Abandon:
        return cls(tuple(c.run_id for c in claims), claims)

    def abandoned(self) -> list[tuple[str, Fence | None]]:
        """Each run to stop, with the fence it must be held under to be stopped (None: any)."""
        if self.claims is not None:
            return [(c.run_id, c.fence) for c in self.claims]
        return [(run_id, None) for run_id in self.runs]

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"runs": list(self.runs)}
        if self.claims is not None:
            out["claims"] = [c.to_wire() for c in self.claims]
        return out

    @classmethod
    def from_wire(cls, m: Mapping[str, Any]) -> Self:
        kind = cls.KIND.value
        claims = None if m.get("claims") is None else claims_from_wire(m, kind, "claims")
        return cls(f.texts(m, kind, "runs"), claims, request=cls.request_of(m))


@dataclass(frozen=True)
class PermitGrant(EmptyMessage):
    """PERMIT_GRANT: the PERMIT with id ``request`` is granted (given back by PERMIT_FREE)."""

    KIND: ClassVar[Kind] = Kind.PERMIT_GRANT
