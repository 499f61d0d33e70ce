"""Messages between the coordinator (master) and a driver (worker).

In standalone they are passed in process; over the internal protocol (cluster) they are
framed as msgpack maps with ``PROTOCOL_VERSION``. They are frozen and kept apart from the
domain types so that the wire can stay stable while the inside changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class Fence:
    """(leader term, assignment epoch): a report is committed only under the current one."""

    term: int
    epoch: int


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
class OfferReply:
    verdict: OfferVerdict
    reason: str = ""
