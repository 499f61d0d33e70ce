"""The one view of the cluster behind ``/readyz``, ``/cluster/health`` and
``GET /api/v1/cluster``, so the three never disagree.

Status words, the same on a standalone, a single master and a Raft group:

- ``healthy``: this master is ready (the API is open, at least one worker is connected) and
  every master is reachable and ready;
- ``degraded``: ready, but a master is unreachable or behind (a quorum carries on);
- ``unhealthy``: not ready: writes are answered 503 (``reason`` says why).

``/readyz`` answers 200 exactly when the status is not ``unhealthy``. Workers connect to the
leader only: a follower reports the leader's count as the leader last told it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiok.master.node import MasterNode

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"

#: Workers' task isolation (``kiok.worker.isolation``), weakest first: the cluster shows its
#: weakest connected worker's ("unknown": a worker that did not say).
_ISOLATION_RANK = ("unknown", "none", "user", "user+pidns")


@dataclass(frozen=True)
class ClusterView:
    status: str
    ready: bool
    #: Why not ready ("" when ready).
    reason: str
    leader: str | None
    #: This master's role: "leader" once it coordinates, else "follower".
    role: str
    term: int
    #: Every master: id, role (leader, follower, unreachable), address, ready.
    masters: list[dict[str, Any]]
    connected_workers: int
    task_isolation: str | None
    commit_index: int | None = None
    applied_index: int | None = None


def cluster_view(node: MasterNode) -> ClusterView:
    ready, why = node.readiness()
    if node.raft is None:
        infos = [w.info() for w in node.coordinator.workers.values() if w.info().connected]
        return ClusterView(
            status=UNHEALTHY if not ready else HEALTHY if infos else DEGRADED,
            ready=ready,
            reason="" if ready else why,
            leader=node.node_id,
            role="leader",
            term=1,  # no Raft: one term (workers are given ``coordinator.term``)
            masters=[{"id": node.node_id, "role": "leader", "address": node.admin_url, "ready": ready}],
            connected_workers=len(infos),
            task_isolation=weakest(i.task_isolation for i in infos),
        )
    raft = node.raft
    leading = node.leadership.leading
    if leading:
        infos = [w.info() for w in node.coordinator.workers.values() if w.info().connected]
        connected, isolation = len(infos), weakest(i.task_isolation for i in infos)
    else:
        told = node.leadership.leader_health
        connected = int(told.get("connectedWorkers") or 0)
        isolation = told.get("taskIsolation")
    masters = node.leadership.masters() if node.keyring is not None else []
    whole = bool(masters) and all(m["ready"] for m in masters)
    status = UNHEALTHY if not ready else HEALTHY if whole and connected else DEGRADED
    raft_status = raft.status()
    return ClusterView(
        status=status,
        ready=ready,
        reason="" if ready else why,
        leader=raft.leader_id,
        role="leader" if leading else "follower",
        term=raft.term,
        masters=masters,
        connected_workers=connected,
        task_isolation=isolation if isinstance(isolation, str) else None,
        commit_index=raft_status.get("commitIndex"),
        applied_index=raft_status.get("lastApplied"),
    )


def weakest(modes: Iterable[str]) -> str | None:
    """The weakest of the connected workers' task isolation modes; None without workers."""
    rank = {mode: i for i, mode in enumerate(_ISOLATION_RANK)}
    return min(modes, key=lambda mode: rank.get(mode, 0), default=None)
