"""Messages between the coordinator (master) and a driver (worker): the base ``Message`` and
the types every side shares (fences, claims, assignments, offer replies).

In standalone they are passed in process; over the internal protocol (cluster) each
``Message`` is framed as a msgpack map by ``kiok.protocol.codec`` with ``PROTOCOL_VERSION``.
They are frozen and kept apart from the domain types so that the wire can stay stable while
the inside changes. The kinds themselves live in ``to_master`` and ``to_worker``.

Versioning: ``PROTOCOL_VERSION`` changes only for an incompatible wire. Within a version a
message may gain fields, always optional with a default meaning "an older peer"; a peer
ignores fields it does not know. So old and new workers and masters interoperate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Self

from kiok.protocol import fields as f
from kiok.protocol.kinds import Kind

PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class Message:
    """One frame's content: ``KIND`` says which, ``request`` is the envelope's ``id`` (what a
    reply or acknowledgement names; 0 when nothing answers it).

    Subclasses give ``to_wire`` (their fields as a map, in the order the wire has always had
    them: msgpack keeps map order, so it is part of the golden bytes) and ``from_wire``
    (checking every field, raising ``ProtocolError`` that names the kind and the field)."""

    KIND: ClassVar[Kind]

    request: int = field(default=0, kw_only=True)

    def to_wire(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_wire(cls, m: Mapping[str, Any]) -> Self:
        raise NotImplementedError

    @classmethod
    def request_of(cls, m: Mapping[str, Any]) -> int:
        """The envelope's request id (0 when absent)."""
        value = f.opt_integer(m, cls.KIND.value, "id", 0)
        assert value is not None
        return value


@dataclass(frozen=True)
class EmptyMessage(Message):
    """A message with no fields of its own: its kind and request id are all it says (a
    permit asked, granted or freed; a heartbeat answered)."""

    def to_wire(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_wire(cls, m: Mapping[str, Any]) -> Self:
        return cls(request=cls.request_of(m))


@dataclass(frozen=True)
class Fence:
    """(leader term, assignment epoch): a report is committed only under the current one."""

    term: int
    epoch: int

    def to_wire(self) -> dict[str, Any]:
        """``term`` and ``epoch``, the keys ``from_wire`` reads, to be merged into a message's map."""
        return {"term": self.term, "epoch": self.epoch}

    @classmethod
    def from_wire(cls, m: Mapping[str, Any], kind: str, *, term_default: int | None = None) -> Fence:
        """``term`` and ``epoch`` of a map; ``term_default`` lets an older peer omit the term."""
        if term_default is None:
            term = f.integer(m, kind, "term", lo=0)
        else:
            term = f.opt_integer(m, kind, "term", term_default, lo=0) or 0
        return cls(term, f.integer(m, kind, "epoch", lo=0))


def opt_fence(m: Mapping[str, Any], kind: str) -> Fence | None:
    """The fence a map names, or None when it names none (a message from an older peer)."""
    if m.get("term") is None and m.get("epoch") is None:
        return None
    return Fence.from_wire(m, kind)


@dataclass(frozen=True)
class Claim:
    """A run a worker holds and the fence it holds it under (hello, heartbeat, abandon)."""

    run_id: str
    fence: Fence

    def to_wire(self) -> dict[str, Any]:
        return {"run": self.run_id, **self.fence.to_wire()}

    @classmethod
    def from_wire(cls, value: object, kind: str, name: str) -> Claim:
        m = f.check_mapping(value, kind, name)
        return cls(f.text(m, kind, "run"), Fence.from_wire(m, kind))


def claims_from_wire(m: Mapping[str, Any], kind: str, name: str) -> tuple[Claim, ...]:
    return tuple(Claim.from_wire(x, kind, name) for x in f.items(m, kind, name))


@dataclass(frozen=True)
class Assignment:
    """A whole run given to one driver."""

    run_id: str
    dag_id: str
    spec: dict[str, Any]
    args: dict[str, Any]
    fence: Fence
    #: Current task records (TaskRecord.to_dict()); finished tasks are kept, not re-run.
    tasks: dict[str, dict[str, Any]]
    created_ms: int
    scheduled_ms: int | None = None
    cancel: bool = False
    #: Resolved connection values the run may use, only those it references (issue: security).
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    #: The run span as a W3C ``traceparent`` when the masters trace (``kiok.otel.enabled``).
    traceparent: str | None = None


class Refusal(StrEnum):
    """Why a master turns a worker's connection away (REFUSED ``code``). Append-only.

    ``UNAUTHENTICATED`` and ``REVOKED`` say the worker's identity is not (or no longer)
    accepted: it must stop driving its runs, which the masters give to other workers."""

    UNSUPPORTED_VERSION = "unsupported_version"
    NOT_LEADER = "not_leader"
    RATE_LIMITED = "rate_limited"
    UNAUTHENTICATED = "unauthenticated"
    REVOKED = "revoked"


class OfferVerdict(StrEnum):
    ACK = "ack"
    NAK = "nak"


@dataclass(frozen=True)
class OfferReply(Message):
    """OFFER_REPLY, worker -> master: the driver's answer to the OFFER whose id is
    ``request``. In process (standalone) the same object is returned with ``request`` 0.
    A verdict other than ``ack`` (one a newer worker may add) is a refusal."""

    KIND: ClassVar[Kind] = Kind.OFFER_REPLY

    verdict: OfferVerdict
    reason: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "reason": self.reason}

    @classmethod
    def from_wire(cls, m: Mapping[str, Any]) -> Self:
        kind = cls.KIND.value
        verdict = f.text(m, kind, "verdict", non_empty=False)
        return cls(
            OfferVerdict.ACK if verdict == OfferVerdict.ACK else OfferVerdict.NAK,
            f.opt_text(m, kind, "reason") or "",
            request=cls.request_of(m),
        )
