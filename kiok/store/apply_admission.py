"""The worker-admission half of ``apply()``: issuing one-time join tokens, redeeming them
for a worker credential, revoking workers.

Only SHA-256 hashes of tokens and credentials are stored (``iam`` keyspace):

    jointoken/<hash>  {"role", "issuedMs", "expiresMs", "usedBy", "usedMs"}
    worker/<id>       {"id", "role", "credentialHash", "tokenHash", "firstAdmittedMs",
                       "admittedMs", "revoked", "revokedMs"}

Redeeming: an unknown or expired token is refused, and so is a used one, whoever presents it
— the worker that used it included: a token is spent by its first exchange, so a worker id
(public: any worker's ``/status`` shows it) plus an old token can never mint a second
credential and lock the real worker out. A worker that lost its credential needs a new token.
A fresh token is refused for a worker id that is admitted and not revoked (revoke it first),
and re-admits a revoked id.
"""

from __future__ import annotations

from typing import Any

from kiok.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from kiok.store import commands as c
from kiok.store import keys as k
from kiok.store.apply_runs import take_runs_from_revoked
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


def redeem_refusal(
    token: dict[str, Any] | None,
    worker: dict[str, Any] | None,
    worker_id: str,
    at_ms: int,
    *,
    since_revocation: bool = True,
) -> str | None:
    """Why ``worker_id`` may not redeem the join token whose record is ``token`` at ``at_ms``
    (``worker``: that id's admission record), or None when it may. Pure: ``apply`` decides
    with it, and a master uses it to turn away a hopeless hello without proposing anything.

    ``since_revocation``: a revoked id needs a token issued after its revocation. Before, a
    token its worker held unsent (its credential was still good) admitted it again the
    moment it was revoked, undoing the revocation (found by the failover probe)."""
    if token is None:
        return "unknown join token"
    if at_ms >= token["expiresMs"]:
        return "join token expired"
    if token["usedBy"] is not None:
        if token["usedBy"] != worker_id:
            return "join token already used by another worker"
        return (
            f"join token already used (by worker {worker_id}); a worker that lost its credential "
            "needs a new join token (revoke it first if it is still admitted)"
        )
    if worker is not None and not worker["revoked"]:
        return f"worker {worker_id} is already admitted; revoke it first to admit it with a new token"
    if since_revocation and worker is not None and token["issuedMs"] < (worker["revokedMs"] or 0):
        return (
            f"join token issued before worker {worker_id} was revoked: a revoked worker is admitted "
            "again only with a token issued since"
        )
    return None


def apply_redeem_join_token(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.RedeemJoinToken)
    token = txn.get(k.IAM, k.join_token(cmd.token_hash))
    worker = txn.get(k.IAM, k.worker(cmd.worker_id))
    refusal = redeem_refusal(token, worker, cmd.worker_id, cmd.at_ms, since_revocation=cmd.since_revocation)
    if refusal is not None:
        raise Unauthenticated(refusal)
    txn.put(k.IAM, k.join_token(cmd.token_hash), dict(token, usedBy=cmd.worker_id, usedMs=cmd.at_ms))
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
    if cmd.take_runs:
        take_runs_from_revoked(txn, cmd.worker_id, cmd.at_ms, fx)
    fx.workers_revoked.append(cmd.worker_id)
    return {"revoked": cmd.worker_id}
