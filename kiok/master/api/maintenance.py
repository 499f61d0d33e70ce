"""``/api/v1/admin/maintenance``: read and switch maintenance mode (replicated, so it holds on
every master and across restarts and leader changes). While it is on no run starts: manual
triggers get 503, cron firings are skipped, pending runs wait; running runs go on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, StrictBool

from kiok.master.api.deps import client_address, node_of, require
from kiok.master.auth import Principal
from kiok.master.views import iso
from kiok.security import actions
from kiok.store import commands as c

if TYPE_CHECKING:
    from kiok.master.node import MasterNode

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class MaintenanceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: StrictBool


def maintenance_view(node: MasterNode) -> dict[str, Any]:
    mode = node.reader.maintenance()
    return {
        "enabled": bool(mode["enabled"]),
        #: The current window's start (or the last one's, with ``until``); null if never on.
        "since": iso(mode.get("sinceMs")),
        "until": iso(mode.get("untilMs")),
        "by": mode.get("by") or None,
        "retryAfterSeconds": node.maintenance_retry_after_s,
    }


@router.get("/maintenance")
async def get_maintenance(
    request: Request, _: Principal = Depends(require(actions.READ_CLUSTER, "cluster"))
) -> dict[str, Any]:
    """Whether maintenance mode is on, since when and who switched it (this master's copy)."""
    return maintenance_view(node_of(request))


@router.post("/maintenance", responses={400: {}})
async def set_maintenance(
    body: MaintenanceRequest,
    request: Request,
    principal: Principal = Depends(require(actions.MAINTENANCE, "cluster")),
) -> dict[str, Any]:
    """Switch maintenance mode on or off; switching it to what it is already changes nothing."""
    node = node_of(request)
    result = await node.log.propose(
        c.SetMaintenance(at_ms=node.clock_ms(), enabled=body.enabled, by=principal.user)
    )
    if result["changed"]:
        node.audit.record(
            principal.user, actions.MAINTENANCE, "on" if body.enabled else "off", client_address(request)
        )
    return maintenance_view(node)
