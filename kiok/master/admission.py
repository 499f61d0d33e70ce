"""Admitting workers: one-time join tokens, the persistent credentials they are exchanged
for, verification on every connect, listing and revocation.

Tokens and credentials are 256-bit random secrets handed out once and never stored: commands
and the state store hold only their SHA-256 hashes (a fast hash is right for secrets with
that much entropy; passwords are another matter). The rules for redeeming live in
``kiok.store.apply_admission``. Disconnecting a revoked worker is the caller's job
(``MasterNode.disconnect_worker``); rate-limiting failed attempts is the internal server's.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from typing import Any

from kiok.errors import InvalidInput, Unauthenticated
from kiok.master.views import iso
from kiok.store import commands as c
from kiok.store.apply_admission import ROLES, redeem_refusal
from kiok.store.commandlog import CommandLog
from kiok.store.reader import StateReader

JOIN_TOKEN_PREFIX = "kiok_join_v1."
CREDENTIAL_PREFIX = "kiok_cred_v1."
MIN_TTL_S = 60
MAX_TTL_S = 7 * 24 * 3600
DEFAULT_TTL_S = 3600

#: The worker ids the internal protocol accepts (kept in step with ``internal_server``).
WORKER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


def secret_hash(secret: str) -> str:
    """What is stored for a token or credential: its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Admission:
    def __init__(self, log: CommandLog, reader: StateReader, clock_ms: Callable[[], int]) -> None:
        self._log = log
        self._reader = reader
        self._clock = clock_ms

    async def issue_join_token(self, role: str = "worker", ttl_s: int = DEFAULT_TTL_S) -> tuple[str, int]:
        """A new one-time join token and its expiry (epoch ms). Raises ``InvalidInput`` for a
        role other than ``worker`` or a TTL outside 60 s .. 7 days."""
        if role not in ROLES:
            raise InvalidInput(f"unknown role {role!r}; join tokens are for: {', '.join(sorted(ROLES))}")
        if not MIN_TTL_S <= ttl_s <= MAX_TTL_S:
            raise InvalidInput(f"ttlSeconds must be between {MIN_TTL_S} and {MAX_TTL_S}, not {ttl_s}")
        token = JOIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        expires_ms = now + ttl_s * 1000
        await self._log.propose(
            c.IssueJoinToken(at_ms=now, token_hash=secret_hash(token), role=role, expires_ms=expires_ms)
        )
        return token, expires_ms

    async def redeem(self, token: str, worker_id: str) -> str:
        """Exchange ``token`` for a new credential for ``worker_id`` (returned; only its hash
        is kept). Raises ``Unauthenticated`` for an unknown, expired or used token — used by
        anyone, this worker included: a token is spent once — or an id that is admitted and
        not revoked (``kiok.store.apply_admission``), and ``InvalidInput`` for a malformed
        worker id."""
        if not WORKER_ID.match(worker_id):
            raise InvalidInput(f"invalid worker id {worker_id!r}")
        token_hash, now = secret_hash(token), self._clock()
        # A token that cannot work is turned away here, without a command: garbage hellos
        # must not cost a (replicated) write each. ``apply`` decides again for the rest.
        refusal = self._refusal(token_hash, worker_id, now)
        if refusal is not None:
            raise Unauthenticated(refusal)
        credential = CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
        await self._log.propose(
            c.RedeemJoinToken(
                at_ms=now,
                token_hash=token_hash,
                worker_id=worker_id,
                credential_hash=secret_hash(credential),
                since_revocation=True,
            )
        )
        return credential

    def redeemable(self, token: str, worker_id: str) -> bool:
        """Whether ``redeem`` would take ``token`` for ``worker_id`` now (committed state on this
        node; no command). A token is a 256-bit secret: asking costs a lookup and tells a
        guesser nothing it could use."""
        return (
            bool(WORKER_ID.match(worker_id))
            and self._refusal(secret_hash(token), worker_id, self._clock()) is None
        )

    def _refusal(self, token_hash: str, worker_id: str, now: int) -> str | None:
        return redeem_refusal(
            self._reader.join_token(token_hash), self._reader.admitted_worker(worker_id), worker_id, now
        )

    def verify(self, worker_id: str, credential: str) -> None:
        """Return if ``credential`` is ``worker_id``'s current one (committed state on this
        node); raise ``Unauthenticated`` otherwise. Compares in constant time."""
        record = self._reader.admitted_worker(worker_id)
        if record is None:
            raise Unauthenticated("unknown worker")
        if record["revoked"]:
            raise Unauthenticated(f"worker {worker_id} was revoked")
        if not hmac.compare_digest(secret_hash(credential), record["credentialHash"] or ""):
            raise Unauthenticated("wrong credential")

    async def revoke(self, worker_id: str) -> None:
        """Revoke ``worker_id``'s credential (repeating it is harmless). Raises ``NotFound``
        for a worker never admitted. Only a new join token admits that id again."""
        await self._log.propose(c.RevokeWorker(at_ms=self._clock(), worker_id=worker_id, take_runs=True))

    def workers(self) -> list[dict[str, Any]]:
        """Every admitted worker, revoked ones too, by id: ``id``, ``admittedAt`` (when its
        current credential was issued), ``revoked``, ``revokedAt``."""
        return [
            {
                "id": r["id"],
                "admittedAt": iso(r["admittedMs"]),
                "revoked": r["revoked"],
                "revokedAt": iso(r["revokedMs"]),
            }
            for r in self._reader.admitted_workers()
        ]
