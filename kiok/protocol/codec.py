"""The one codec of the internal protocol: ``encode`` a ``Message`` to its wire map (the
envelope ``v``/``t``/``id`` first, then the kind's fields) and ``decode`` a wire map to the
``Message`` its ``t`` names, every field checked. Both endpoints (master and worker) build
and read frames only through these two functions.

``decode`` raises ``ProtocolError`` and nothing else, whatever the map holds: the caller
closes that one connection. The protocol version is not checked here: only the HELLO's is,
by the master, which refuses an unsupported one with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kiok.errors import ProtocolError
from kiok.protocol.kinds import Kind
from kiok.protocol.messages import PROTOCOL_VERSION, Message, OfferReply
from kiok.protocol.to_master import Heartbeat, Hello, Log, Permit, PermitFree, Release, Report
from kiok.protocol.to_worker import (
    Abandon,
    Cancel,
    HeartbeatAck,
    LogAck,
    Offer,
    PermitGrant,
    Refused,
    ReportAck,
    Welcome,
)

#: What a worker sends.
TO_MASTER: tuple[type[Message], ...] = (
    Hello,
    Heartbeat,
    OfferReply,
    Report,
    Log,
    Release,
    Permit,
    PermitFree,
)
#: What a master sends.
TO_WORKER: tuple[type[Message], ...] = (
    Welcome,
    Refused,
    Offer,
    ReportAck,
    LogAck,
    Cancel,
    Abandon,
    PermitGrant,
    HeartbeatAck,
)
#: The registry: every kind's one class (a test checks that every kind has one).
MESSAGES: dict[Kind, type[Message]] = {cls.KIND: cls for cls in TO_MASTER + TO_WORKER}
#: What each side may receive (anything else from that peer is a protocol error).
FROM_WORKER = frozenset(cls.KIND for cls in TO_MASTER)
FROM_MASTER = frozenset(cls.KIND for cls in TO_WORKER)


def encode(message: Message) -> dict[str, Any]:
    """The wire map of ``message``: ``{"v", "t", "id", ...its fields}``, ready for framing."""
    return {"v": PROTOCOL_VERSION, "t": message.KIND.value, "id": message.request, **message.to_wire()}


def kind_of(m: Mapping[str, Any]) -> Kind:
    """The kind a wire map names; ProtocolError for a missing or unknown one."""
    t = m.get("t") if isinstance(m, Mapping) else None
    if not isinstance(t, str):
        raise ProtocolError("a frame must be a map with a string 't' (message type)")
    try:
        return Kind(t)
    except ValueError:
        raise ProtocolError(f"unknown message type {t[:64]!r}") from None


def decode(m: Mapping[str, Any]) -> Message:
    """The message a wire map holds; ProtocolError naming the kind and field when it is not
    one. Fields the kind does not define are ignored (a newer peer may send more)."""
    return MESSAGES[kind_of(m)].from_wire(m)
