"""The worker-admission half of ``apply()``: issuing one-time join tokens, redeeming them
for a worker credential, revoking workers.

Only SHA-256 hashes of tokens and credentials are stored (``iam`` keyspace):

    jointoken/<hash>  {"role", "issuedMs", "expiresMs", "usedBy", "usedMs"}
    worker/<id>       {"id", "role", "credentialHash", "tokenHash", "firstAdmittedMs",
                       "admittedMs", "revoked", "revokedMs"}

Redeeming: an unknown or expired token is refused; a used token is refused for any other
worker. The worker that used it may redeem it again (it crashed before saving its
credential; it gets a new credential and the old one stops working) as long as that token
is still the one that admitted it and the worker was not revoked since. A fresh token is
refused for a worker id that is admitted and not revoked (revoke it first), and re-admits a
revoked id.
"""

from __future__ import annotations

from typing import Any

from kiok.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from kiok.store import commands as c
from kiok.store import keys as k
from kiok.store.effects import Effects
from kiok.store.txn import Txn

ROLES = frozenset({"worker"})

#: Records of expired join tokens are dropped this long after they expire (on the next issue);
#: until then, presenting one says "expired" rather than "unknown".
EXPIRED_TOKEN_RETENTION_MS = 7 * 24 * 3600 * 1000


def apply_issue_join_token(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.IssueJoinToken)
    if cmd.role not in ROLES:
        raise InvalidInput(f"unknown role {cmd.role!r}; join tokens are for: {', '.join(sorted(ROLES))}")
    if txn.get(k.IAM, k.join_token(cmd.token_hash)) is not None:
        raise Conflict("this join token was issued already")
    for key, record in list(txn.scan(k.IAM, k.JOIN_TOKEN_PREFIX)):
        if record["expiresMs"] + EXPIRED_TOKEN_RETENTION_MS < cmd.at_ms:
            txn.delete(k.IAM, key)
    txn.put(
        k.IAM,
        k.join_token(cmd.token_hash),
        {
            "role": cmd.role,
            "issuedMs": cmd.at_ms,
            "expiresMs": cmd.expires_ms,
            "usedBy": None,
            "usedMs": None,
        },
    )
    return {"expiresMs": cmd.expires_ms}


def apply_redeem_join_token(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.RedeemJoinToken)
    token = txn.get(k.IAM, k.join_token(cmd.token_hash))
    if token is None:
        raise Unauthenticated("unknown join token")
    if cmd.at_ms >= token["expiresMs"]:
        raise Unauthenticated("join token expired")
    if token["usedBy"] is not None and token["usedBy"] != cmd.worker_id:
        raise Unauthenticated("join token already used by another worker")
    worker = txn.get(k.IAM, k.worker(cmd.worker_id))
    if token["usedBy"] is None:
        if worker is not None and not worker["revoked"]:
            raise Unauthenticated(
                f"worker {cmd.worker_id} is already admitted; revoke it first to admit it with a new token"
            )
        txn.put(k.IAM, k.join_token(cmd.token_hash), dict(token, usedBy=cmd.worker_id, usedMs=cmd.at_ms))
    elif worker is None or worker["revoked"]:
        raise Unauthenticated(f"worker {cmd.worker_id} was revoked; it needs a new join token")
    elif worker["tokenHash"] != cmd.token_hash:
        raise Unauthenticated("join token already used; the worker was admitted again with a newer one")
    txn.put(
        k.IAM,
        k.worker(cmd.worker_id),
        {
            "id": cmd.worker_id,
            "role": token["role"],
            "credentialHash": cmd.credential_hash,
            "tokenHash": cmd.token_hash,
            "firstAdmittedMs": worker["firstAdmittedMs"] if worker else cmd.at_ms,
            "admittedMs": cmd.at_ms,
            "revoked": False,
            "revokedMs": None,
        },
    )
    return {"worker": cmd.worker_id}


def apply_revoke_worker(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.RevokeWorker)
    worker = txn.get(k.IAM, k.worker(cmd.worker_id))
    if worker is None:
        raise NotFound(f"worker {cmd.worker_id!r} not found (never admitted)")
    if not worker["revoked"]:
        txn.put(
            k.IAM,
            k.worker(cmd.worker_id),
            dict(worker, revoked=True, revokedMs=cmd.at_ms, credentialHash=None),
        )
    return {"revoked": cmd.worker_id}
