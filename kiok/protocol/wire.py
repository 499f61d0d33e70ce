"""The message kinds of the internal protocol and the conversion of domain messages to and
from their wire maps. Kinds are append-only: one shipped is never renamed or reused.

Every frame is ``{"v": PROTOCOL_VERSION, "t": kind, "id": request id, ...}``. The worker
opens the connection and speaks first (HELLO); the master answers WELCOME or REFUSED.

    worker -> master                         master -> worker
    HELLO        version, id, auth, labels   WELCOME    worker id, credential?, term, timings
    HEARTBEAT    slots, draining, runs       REFUSED    code (``Refusal``), reason; then closed
    OFFER_REPLY  id of the OFFER, verdict    OFFER      a whole run (Assignment)
    REPORT       run, fence, task records    REPORT_ACK id, fenced?
    LOG          run, fence, task, bytes,    CANCEL     run
                 final (taken only from the run's driver under its current fence)
    RELEASE      run, fence, reason          ABANDON    runs this worker no longer owns
    PERMIT       id (one more task body)     PERMIT_GRANT id
    PERMIT_FREE  (one task body ended)

HELLO also carries slots, claimed runs and ``taskIsolation`` (how the worker isolates its
tasks: ``none``, ``user`` or ``user+pidns``; shown by ``/cluster/health``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from kiok.errors import ProtocolError
from kiok.protocol.messages import PROTOCOL_VERSION, Assignment, Fence
from kiok.security.kms import Keyring


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


def frame(kind: Kind, request_id: int = 0, **fields: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "t": kind.value, "id": request_id, **fields}


def kind_of(message: dict[str, Any]) -> Kind:
    try:
        return Kind(message["t"])
    except ValueError:
        raise ProtocolError(f"unknown message type {message.get('t')!r}") from None


def field(message: dict[str, Any], name: str, typ: type | tuple[type, ...]) -> Any:
    """A required field of the expected type, or ProtocolError naming it."""
    value = message.get(name)
    if not isinstance(value, typ) or (isinstance(value, bool) and typ is int):
        raise ProtocolError(f"{message.get('t')}: field {name!r} missing or of the wrong type")
    return value


def assignment_to_wire(a: Assignment) -> dict[str, Any]:
    return {
        "run": a.run_id,
        "dag": a.dag_id,
        "spec": a.spec,
        "args": a.args,
        "term": a.fence.term,
        "epoch": a.fence.epoch,
        "tasks": a.tasks,
        "created": a.created_ms,
        "scheduled": a.scheduled_ms,
        "cancel": a.cancel,
        "secrets": a.secrets,
    }


def assignment_from_wire(m: dict[str, Any]) -> Assignment:
    return Assignment(
        run_id=field(m, "run", str),
        dag_id=field(m, "dag", str),
        spec=field(m, "spec", dict),
        args=field(m, "args", dict),
        fence=Fence(field(m, "term", int), field(m, "epoch", int)),
        tasks=field(m, "tasks", dict),
        created_ms=field(m, "created", int),
        scheduled_ms=m.get("scheduled"),
        cancel=bool(m.get("cancel")),
        secrets=m.get("secrets") or {},
    )


_OUTBOX_KEY = "joblog-encryption"


def outbox_keys_to_wire(ring: Keyring) -> dict[str, Any]:
    return {"current": ring.current[_OUTBOX_KEY], "versions": sorted(ring.versions[_OUTBOX_KEY].items())}


def outbox_keys_from_wire(m: dict[str, Any]) -> Keyring:
    """The WELCOME's ``outboxKeys``; ProtocolError when missing or malformed."""
    keys = m.get("outboxKeys")
    try:
        versions = {int(v): bytes(k) for v, k in keys["versions"]}  # type: ignore[index]
        current = int(keys["current"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        raise ProtocolError("welcome: field 'outboxKeys' missing or of the wrong type") from None
    if current not in versions or any(len(k) != 32 for k in versions.values()):
        raise ProtocolError("welcome: field 'outboxKeys' is inconsistent")
    return Keyring({_OUTBOX_KEY: versions}, {_OUTBOX_KEY: current})
