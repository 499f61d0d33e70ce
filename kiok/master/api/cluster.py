"""``/api/v1/cluster`` (masters, leader, term, workers) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kiok.master.api.deps import node_of, require
from kiok.master.auth import Principal
from kiok.master.cluster_view import cluster_view
from kiok.master.views import iso
from kiok.security import actions

router = APIRouter(tags=["cluster"])


@router.get("/api/v1/cluster")
async def cluster(
    request: Request, _: Principal = Depends(require(actions.READ_CLUSTER, "cluster"))
) -> dict[str, Any]:
    node = node_of(request)
    view = cluster_view(node)
    workers = []
    for handle in node.coordinator.workers.values():
        info = handle.info()
        workers.append(
            {
                "id": info.id,
                "address": info.address,
                "labels": list(info.labels),
                "slots": info.slots,
                "free": info.free,
                "connected": info.connected,
                "draining": info.draining,
                "lastHeartbeat": iso(info.last_heartbeat_ms),
                "taskIsolation": info.task_isolation,
            }
        )
    return {
        "status": view.status,
        "masters": view.masters,
        "leader": view.leader,
        "term": view.term,
        #: A follower forwards this request: workers connect to the leader, it tells them.
        "connectedWorkers": view.connected_workers,
        "workers": workers,
    }


@router.get("/metrics", response_class=Response)
async def metrics(
    request: Request, _: Principal = Depends(require(actions.READ_METRICS, "cluster"))
) -> Response:
    node = node_of(request)
    return Response(generate_latest(node.metrics.registry), media_type=CONTENT_TYPE_LATEST)
