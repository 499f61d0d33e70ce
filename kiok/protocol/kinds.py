"""The message kinds of the internal protocol. Append-only: a kind once shipped is never
renamed or reused (a peer that does not know a kind refuses the frame naming it)."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    HELLO = "hello"
    WELCOME = "welcome"
    REFUSED = "refused"
    HEARTBEAT = "heartbeat"
    OFFER = "offer"
    OFFER_REPLY = "offer_reply"
    REPORT = "report"
    REPORT_ACK = "report_ack"
    LOG = "log"
    RELEASE = "release"
    CANCEL = "cancel"
    ABANDON = "abandon"
    PERMIT = "permit"
    PERMIT_GRANT = "permit_grant"
    PERMIT_FREE = "permit_free"
    #: The master stored (or refused, ``fenced``) the log batch with this request id.
    LOG_ACK = "log_ack"
    #: The master's answer to a HEARTBEAT, sent only to a worker whose HELLO named the
    #: ``keepalive`` capability: a master that says nothing for a while is gone or frozen.
    HEARTBEAT_ACK = "heartbeat_ack"
