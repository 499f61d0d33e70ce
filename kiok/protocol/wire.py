"""The internal protocol at a glance. Kinds (``kinds.Kind``) are append-only: one shipped is
never renamed or reused. Each kind is one frozen class (``to_master``, ``to_worker``,
``messages.OfferReply``) and ``codec`` is the one conversion to and from wire maps.

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
    PERMIT_FREE  (one task body ended)       LOG_ACK    id, fenced?
                                             HEARTBEAT_ACK (each HEARTBEAT, if asked)

A REPORT with a negative id carries attempt starts: the master acknowledges it once
committed, and only then does the attempt begin. ABANDON's ``claims`` name the fence of each
run (only the driver under that fence stops). HELLO also carries slots, claimed runs and
``taskIsolation`` (how the worker isolates its tasks: ``none``, ``user`` or ``user+pidns``;
shown by ``/cluster/health``), ``moreRuns`` (its runs did not all fit in the hello, which is
read before authentication: its first HEARTBEAT names them all) and ``capabilities``:
``keepalive`` asks the master to answer each HEARTBEAT (its WELCOME says ``keepalive`` when
it will), so that a worker can leave a master silent for half the heartbeat timeout.
"""

from __future__ import annotations

from typing import Any

from kiok.errors import ProtocolError
from kiok.protocol.kinds import Kind
from kiok.protocol.to_worker import OutboxKeys
from kiok.security.kms import Keyring

__all__ = ["Kind", "outbox_keys_from_wire", "outbox_keys_to_wire"]


def outbox_keys_to_wire(ring: Keyring) -> dict[str, Any]:
    return OutboxKeys.of(ring).to_wire()


def outbox_keys_from_wire(m: dict[str, Any]) -> Keyring:
    """The WELCOME's ``outboxKeys``; ProtocolError when missing or malformed."""
    if m.get("outboxKeys") is None:
        raise ProtocolError("welcome: field 'outboxKeys' missing or of the wrong type")
    return OutboxKeys.from_wire(m["outboxKeys"], "welcome").keyring()
