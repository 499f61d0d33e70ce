"""``/api/v1/cluster`` (masters, leader, term, workers) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kiok.master.api.deps import node_of, require
from kiok.master.auth import Principal
from kiok.master.views import iso
from kiok.security import actions

router = APIRouter(tags=["cluster"])


@router.get("/api/v1/cluster")
async def cluster(
    request: Request, _: Principal = Depends(require(actions.READ_CLUSTER, "cluster"))
) -> dict[str, Any]:
    node = node_of(request)
    ready, _why = node.readiness()
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
    if node.raft is None:
        return {
            "masters": [
                {"id": node.node_id, "role": "leader", "address": node.admin_address, "ready": ready}
            ],
            "leader": node.node_id,
            "term": node.coordinator.term,
            "workers": workers,
        }
    return {
        "masters": node.leadership.masters(),
        "leader": node.raft.leader_id,
        "term": node.raft.term,
        "workers": workers,
    }


@router.get("/metrics", response_class=Response)
async def metrics(
    request: Request, _: Principal = Depends(require(actions.READ_METRICS, "cluster"))
) -> Response:
    node = node_of(request)
    return Response(generate_latest(node.metrics.registry), media_type=CONTENT_TYPE_LATEST)
