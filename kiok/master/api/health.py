"""Probes (no auth): ``/healthz`` while the process runs, ``/readyz`` once this node is
ready and until it begins to shut down, ``/cluster/health`` for the cluster's view."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from kiok.errors import KiokError
from kiok.master.api.deps import node_of
from kiok.master.cluster_view import cluster_view

if TYPE_CHECKING:
    from kiok.master.node import MasterNode

router = APIRouter(tags=["health"])


class ShutdownNotice:
    """Told by the process's root when it begins to shut down (a drain after SIGTERM): from
    then on ``/readyz`` answers 503 with ``reason``, so a load balancer sends no new traffic,
    while ``/healthz`` stays 200 (the process is alive) until it exits. ``/cluster/health``
    is the cluster's view, which followers read from their leader: not changed by it."""

    def __init__(self) -> None:
        self.reason = ""

    def begin(self, reason: str) -> None:
        self.reason = reason


def shutdown_notice(request: Request) -> ShutdownNotice:
    notice = getattr(request.app.state, "shutdown", None)
    return notice if isinstance(notice, ShutdownNotice) else ShutdownNotice()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready yet; the body says what is missing"}})
async def readyz(request: Request) -> Any:
    """200 while the status is healthy or degraded, 503 unhealthy (the same words and the
    same view as ``/cluster/health``); 503 too once the process is shutting down."""
    if stopping := shutdown_notice(request).reason:
        return JSONResponse({"status": "unhealthy", "ready": False, "reason": stopping}, status_code=503)
    view = cluster_view(node_of(request))
    if view.ready:
        return {"status": view.status, "ready": True}
    return JSONResponse({"status": view.status, "ready": False, "reason": view.reason}, status_code=503)


@router.get("/cluster/health")
async def cluster_health(request: Request) -> dict[str, Any]:
    node = node_of(request)
    view = cluster_view(node)
    out: dict[str, Any] = {
        "status": view.status,
        "ready": view.ready,
        "leader": view.leader,
        #: "leader" once this master coordinates (its takeover done), else "follower".
        "role": view.role,
        "term": view.term,
        "masters": 1 if node.raft is None else len(node.raft.config.peers),
        "unreachableMasters": sorted(m["id"] for m in view.masters if m["role"] == "unreachable"),
        "connectedWorkers": view.connected_workers,
        "taskIsolation": view.task_isolation,
        "maintenanceMode": _maintenance(node),
    }
    if view.reason:
        out["reason"] = view.reason
    if node.raft is not None:
        out["commitIndex"] = view.commit_index
        out["appliedIndex"] = view.applied_index
    return out


def _maintenance(node: MasterNode) -> bool | None:
    """Whether maintenance mode is on; None while this master cannot read its state yet."""
    if node.keyring is None:
        return None
    try:
        return bool(node.reader.maintenance()["enabled"])
    except KiokError:
        return None
