"""Probes (no auth): ``/healthz`` while the process runs, ``/readyz`` once this node is
ready, ``/cluster/health`` for the cluster's view."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from kiok.errors import KiokError
from kiok.master.api.deps import node_of

if TYPE_CHECKING:
    from kiok.master.node import MasterNode

router = APIRouter(tags=["health"])

#: Workers' task isolation (``kiok.worker.isolation``), weakest first: the cluster shows its
#: weakest connected worker's ("unknown": a worker that did not say).
_ISOLATION_RANK = ("unknown", "none", "user", "user+pidns")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready yet; the body says what is missing"}})
async def readyz(request: Request) -> Any:
    ready, why = node_of(request).readiness()
    if ready:
        return {"status": "ready"}
    return JSONResponse({"status": "not ready", "reason": why}, status_code=503)


@router.get("/cluster/health")
async def cluster_health(request: Request) -> dict[str, Any]:
    node = node_of(request)
    ready, _ = node.readiness()
    infos = [w.info() for w in node.coordinator.workers.values()]
    connected = sum(1 for info in infos if info.connected)
    isolation = _weakest(info.task_isolation for info in infos if info.connected)
    if node.raft is None:
        return {
            "status": "healthy" if ready else "unhealthy" if connected == 0 else "degraded",
            "leader": node.node_id,
            "term": node.coordinator.term,
            "masters": 1,
            "connectedWorkers": connected,
            "taskIsolation": isolation,
            "maintenanceMode": _maintenance(node),
        }
    raft = node.raft.status()
    quorum = bool(raft.get("hasQuorum"))
    leader = node.raft.leader_id
    return {
        "status": "healthy" if ready else "degraded" if leader is not None and quorum else "unhealthy",
        "leader": leader,
        #: "leader" once this master coordinates (its takeover done), else "follower".
        "role": "leader" if node.leadership.leading else "follower",
        "term": node.raft.term,
        "masters": len(node.raft.config.peers),
        "connectedWorkers": connected,
        "taskIsolation": isolation,
        "maintenanceMode": _maintenance(node),
        "commitIndex": raft.get("commitIndex"),
        "appliedIndex": raft.get("lastApplied"),
    }


def _maintenance(node: MasterNode) -> bool | None:
    """Whether maintenance mode is on; None while this master cannot read its state yet."""
    if node.keyring is None:
        return None
    try:
        return bool(node.reader.maintenance()["enabled"])
    except KiokError:
        return None


def _weakest(modes: Iterable[str]) -> str | None:
    """The weakest of the connected workers' task isolation modes; None without workers."""
    rank = {mode: i for i, mode in enumerate(_ISOLATION_RANK)}
    return min(modes, key=lambda mode: rank.get(mode, 0), default=None)
