"""``/api/v1/admin/backup*``: take a backup now, list backups, the backup schedule
(replicated), and restore one in place (destructive: the request must repeat the id)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from kiok.errors import InvalidInput
from kiok.master.api.deps import client_address, node_of, require
from kiok.master.auth import Principal
from kiok.master.backups import NoBackupTarget, check_cron
from kiok.master.views import iso
from kiok.security import actions
from kiok.store import commands as c
from kiok.store.backup import Manifest

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


def backup_view(m: Manifest) -> dict[str, Any]:
    return {
        "id": m.id,
        "time": iso(m.created_ms),
        "size": m.size,
        "uploadedBytes": m.uploaded_bytes,
        "stores": list(m.stores),
        "files": len(m.files),
        "incrementalBase": m.base,
        "master": m.master or None,
    }


@router.post("/backup", status_code=201, responses={409: {}, 503: {}})
async def backup_now(
    request: Request, principal: Principal = Depends(require(actions.BACKUP, "cluster"))
) -> dict[str, Any]:
    """Back up every store now (incremental over the newest backup); answers once it is
    stored. Then the target is pruned to ``kiok.backup.keep``: ``pruned`` lists what went."""
    node = node_of(request)
    manifest, pruned = await node.backups.backup_now()
    node.audit.record(principal.user, actions.BACKUP, manifest.id, client_address(request))
    return {"backupId": manifest.id, **backup_view(manifest), "pruned": pruned}


@router.get("/backups", responses={409: {}, 503: {}})
async def list_backups(
    request: Request, _: Principal = Depends(require(actions.LIST_BACKUPS, "cluster"))
) -> dict[str, Any]:
    """Every complete backup in the target whose manifest authenticates under this cluster's
    master key (what a restore accepts), newest first; ``rejected``: the other manifests in
    the target (planted, altered, another cluster's), by id and why, nothing they claim
    shown; and the last restore into this cluster's state (null: never restored).
    ``targetSet`` false: no target is set, nothing to list (an answer, not a 409: a page
    that shows the backups asks this first)."""
    node = node_of(request)
    try:
        listed = await node.backups.list()
    except NoBackupTarget:
        return {
            "targetSet": False,
            "backups": [],
            "rejected": [],
            "lastRestore": restore_view(node.backups.last_restore()),
        }
    return {
        "targetSet": True,
        "backups": [backup_view(m) for m in listed.backups],
        "rejected": [{"id": r.id, "problem": r.problem} for r in listed.rejected],
        "lastRestore": restore_view(node.backups.last_restore()),
    }


def restore_view(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``cluster/last-restore`` record as the API shows it (``raftIndex``: the entry
    that replicated it; null on a single master)."""
    if record is None:
        return None
    at = record.get("atMs")
    return {
        "backupId": record.get("backupId"),
        "time": iso(at) if isinstance(at, int) else None,
        "by": record.get("by") or None,
        "raftIndex": record.get("raftIndex"),
        "manifestSha256": record.get("manifestSha256"),
    }


class CronRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    cron: str | None = Field(max_length=200, description="5-field cron (UTC); null or empty clears it.")


def cron_view(request: Request) -> dict[str, Any]:
    node = node_of(request)
    return {"cron": node.backups.cron(), "timezone": "UTC", "lastError": node.backups.last_error}


@router.get("/backup/cron")
async def get_backup_cron(
    request: Request, _: Principal = Depends(require(actions.LIST_BACKUPS, "cluster"))
) -> dict[str, Any]:
    """When the leader takes backups on its own (null: never)."""
    return cron_view(request)


@router.put("/backup/cron", responses={400: {}})
async def set_backup_cron(
    body: CronRequest, request: Request, principal: Principal = Depends(require(actions.BACKUP, "cluster"))
) -> dict[str, Any]:
    """Set the schedule (every master keeps it; the leader arms it from now), or clear it."""
    cron = check_cron(body.cron)
    node = node_of(request)
    await node.log.propose(c.SetBackupCron(at_ms=node.clock_ms(), cron=cron, by=principal.user))
    node.audit.record(principal.user, actions.BACKUP, f"cron {cron or 'cleared'}", client_address(request))
    return cron_view(request)


class RestoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    confirm: str | None = Field(default=None, max_length=100, description="The backup id, repeated.")


@router.post("/backups/{backup_id}/restore", responses={400: {}, 404: {}, 409: {}})
async def restore_backup(
    backup_id: str,
    request: Request,
    body: RestoreRequest | None = None,
    principal: Principal = Depends(require(actions.RESTORE, "cluster")),
) -> dict[str, Any]:
    """Replace every store with the backup's content. Destructive: ``confirm`` must repeat the
    id. The whole backup is verified (hashes) before anything is replaced. With several
    masters the restore is replicated: every master swaps in the same backup (the answer
    comes once the leader has)."""
    if body is None or body.confirm != backup_id:
        raise InvalidInput(f'confirm: restoring replaces every store; send {{"confirm": "{backup_id}"}}')
    node = node_of(request)
    manifest = await node.backups.restore(backup_id, principal.user)
    node.audit.record(principal.user, actions.RESTORE, backup_id, client_address(request))
    return {"restored": manifest.id, "time": iso(manifest.created_ms)}
