"""``/api/v1/admin``: worker admission — one-time join tokens, the admitted workers, revoking
one (which also disconnects it at once) — and the KMS data keys (list, rotate)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from kiok.core.instants import parse_instant_ms
from kiok.errors import InvalidInput, NotReady
from kiok.master.admission import DEFAULT_TTL_S, MAX_TTL_S, MIN_TTL_S
from kiok.master.api.deps import client_address, node_of, require
from kiok.master.auth import Principal
from kiok.master.views import iso
from kiok.security import actions
from kiok.security.kms import DATA_KEYS
from kiok.store.reader import AuditQuery

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class JoinTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: str = Field(default="worker", max_length=64, description="Only `worker` so far.")
    ttlSeconds: int = Field(default=DEFAULT_TTL_S, ge=MIN_TTL_S, le=MAX_TTL_S)


class JoinTokenResponse(BaseModel):
    token: str
    expiresAt: str


@router.post("/join-tokens", status_code=201, response_model=JoinTokenResponse, responses={400: {}})
async def issue_join_token(
    request: Request,
    body: JoinTokenRequest | None = Body(default=None),
    principal: Principal = Depends(require(actions.ISSUE_JOIN_TOKEN, "cluster")),
) -> Any:
    """A one-time join token: a worker started with it exchanges it for a persistent
    credential on its first connect. Reachable before the cluster opens."""
    body = body or JoinTokenRequest()
    node = node_of(request)
    token, expires_ms = await node.admission.issue_join_token(body.role, body.ttlSeconds)
    node.audit.record(principal.user, actions.ISSUE_JOIN_TOKEN, body.role, client_address(request))
    return {"token": token, "expiresAt": iso(expires_ms)}


@router.get("/workers")
async def list_workers(
    request: Request, _: Principal = Depends(require(actions.LIST_WORKERS, "cluster"))
) -> dict[str, Any]:
    """Every admitted worker, revoked ones included."""
    return {"workers": node_of(request).admission.workers()}


@router.delete("/workers/{worker_id}", responses={404: {}})
async def revoke_worker(
    worker_id: str,
    request: Request,
    principal: Principal = Depends(require(actions.REVOKE_WORKER, "cluster")),
) -> dict[str, Any]:
    """Revoke a worker's credential and disconnect it at once (revoking again is harmless)."""
    node = node_of(request)
    await node.admission.revoke(worker_id)
    node.audit.record(principal.user, actions.REVOKE_WORKER, worker_id, client_address(request))
    node.disconnect_worker(worker_id)
    return {"revoked": worker_id}


class RotateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    key: str = Field(max_length=64, description="One of " + ", ".join(DATA_KEYS))


@router.get("/kms")
async def list_keys(
    request: Request, _: Principal = Depends(require(actions.LIST_KEYS, "cluster"))
) -> dict[str, Any]:
    """The data keys and their current versions (never key material)."""
    ring = node_of(request).keyring
    if ring is None:
        raise NotReady("the store has no keyring yet")
    return {
        "keys": [
            {"key": name, "version": ring.current[name], "versions": len(ring.versions[name])}
            for name in DATA_KEYS
        ]
    }


@router.post("/kms/rotate", responses={400: {}})
async def rotate_key(
    body: RotateRequest,
    request: Request,
    principal: Principal = Depends(require(actions.ROTATE_KEY, "cluster")),
) -> dict[str, Any]:
    """A new version of the key becomes current; data written under older ones still reads."""
    if body.key not in DATA_KEYS:
        raise InvalidInput(f"key: unknown key {body.key!r}; one of {', '.join(DATA_KEYS)}")
    node = node_of(request)
    version = await node.rotate_key(body.key)
    node.audit.record(principal.user, actions.ROTATE_KEY, f"{body.key} v{version}", client_address(request))
    return {"key": body.key, "version": version}


@router.get("/audit")
async def audit_log(
    request: Request,
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = Query(default=None, max_length=20),
    actor: str | None = Query(default=None, max_length=128, description="exactly this actor"),
    action: str | None = Query(
        default=None, max_length=64, description="exactly this action, or a prefix ending in * (iam:*)"
    ),
    outcome: Literal["ok", "refused"] | None = Query(default=None),
    since: str | None = Query(default=None, max_length=40, description="at or after"),
    until: str | None = Query(default=None, max_length=40, description="before"),
    _: Principal = Depends(require(actions.READ_AUDIT, "cluster")),
) -> dict[str, Any]:
    """Audit records, newest first, optionally filtered; pass ``nextCursor`` back as
    ``cursor`` (with the same filters). A filtered page reads at most 10,000 records, so it
    may hold fewer than ``limit`` entries (even none) and still have a ``nextCursor``."""
    seq = None
    if cursor is not None:
        if not (cursor.isascii() and cursor.isdigit()):
            raise InvalidInput("cursor: not a cursor returned by this endpoint")
        seq = int(cursor)
    query = AuditQuery(
        actor=actor or None,
        action=action or None,
        success=None if outcome is None else outcome == "ok",
        since_ms=parse_instant_ms(since, "since") if since else None,
        until_ms=parse_instant_ms(until, "until") if until else None,
    )
    entries, next_seq = node_of(request).reader.audit(limit=limit, cursor=seq, query=query)
    keys = ("actor", "action", "target", "address", "success", "detail")
    return {
        "entries": [{"at": iso(e["atMs"]), **{k: e[k] for k in keys}} for e in entries],
        "nextCursor": None if next_seq is None else str(next_seq),
    }
