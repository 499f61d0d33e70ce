"""``GET /api/v1/dashboard``: the cluster at a glance in one request — runs by state, runs
started and tasks finished over time, the running, waiting (with why) and recently failed
runs. Only runs the caller may list count (``runs:List``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query, Request

from kiok.core.dashboard import Dashboard, RunSample, summarize
from kiok.core.run_clock import started_ms as run_started_ms
from kiok.core.states import TERMINAL_TASK_STATES
from kiok.master.api.deps import node_of, require_anywhere
from kiok.master.auth import Principal
from kiok.master.views import iso
from kiok.security import actions, resources

if TYPE_CHECKING:
    from kiok.master.node import MasterNode

router = APIRouter(prefix="/api/v1", tags=["runs"])

#: Run headers read at most per request (newest first): the window of a busy cluster may
#: hold more, then ``truncated`` is true and the oldest part of the charts is short.
SCAN_LIMIT = 2000
_TERMINAL_TASKS = {s.value for s in TERMINAL_TASK_STATES}


def _sample(node: MasterNode, header: dict[str, Any], window_start_ms: int) -> RunSample:
    """A run's summary; its task records are read only if the run touches the window."""
    ends: tuple[int, ...] = ()
    total = done = 0
    active = header["endedMs"] is None
    if active or header["endedMs"] >= window_start_ms:
        run = node.reader.run(header["runId"]) or {"tasks": {}}
        tasks = run["tasks"].values()
        total = len(run["tasks"])
        done = sum(1 for t in tasks if t.get("state") in _TERMINAL_TASKS)
        ends = tuple(t["endedMs"] for t in tasks if t.get("endedMs") is not None)
    waiting = node.coordinator.waiting.get(header["runId"]) if active else None
    if active and header["state"] == "RUNNING" and header.get("worker") is None:
        waiting = waiting or "waiting for a new driver (the previous one was lost or gave the run back)"
    if active and header["state"] == "PENDING" and not waiting:
        waiting = "waiting to be assigned to a worker"
    return RunSample(
        run_id=header["runId"],
        dag_id=header["dagId"],
        state=header["state"],
        created_ms=header["createdMs"],
        started_ms=run_started_ms(header),  # a re-run run: when the re-run started
        ended_ms=header["endedMs"],
        waiting=waiting,
        tasks_total=total,
        tasks_done=done,
        task_ends_ms=ends,
    )


def _run_json(s: RunSample) -> dict[str, Any]:
    return {
        "runId": s.run_id,
        "dagId": s.dag_id,
        "state": s.state,
        "createdAt": iso(s.created_ms),
        "startedAt": iso(s.started_ms),
        "endedAt": iso(s.ended_ms),
        "waiting": s.waiting,
        "tasks": s.tasks_total,
        "tasksDone": s.tasks_done,
    }


def dashboard_json(d: Dashboard) -> dict[str, Any]:
    return {
        "windowSeconds": d.window_ms // 1000,
        "bucketSeconds": d.bucket_ms / 1000,
        "counts": d.counts,
        "series": [{"at": iso(b.start_ms), "runs": b.runs, "tasks": b.tasks} for b in d.series],
        "running": [_run_json(s) for s in d.running],
        "waiting": [_run_json(s) for s in d.waiting],
        "failed": [_run_json(s) for s in d.failed],
        "scanned": d.scanned,
        "truncated": d.truncated,
    }


@router.get("/dashboard")
async def dashboard(
    request: Request,
    window: int = Query(default=3600, ge=60, le=7 * 86400, description="Seconds to look back."),
    buckets: int = Query(default=30, ge=1, le=240, description="Slices of the window in the series."),
    principal: Principal = Depends(require_anywhere(actions.LIST_RUNS)),
) -> dict[str, Any]:
    """Counts by state (every unfinished run plus those that ended in the window), the series
    (runs created and tasks finished per slice of the window; tasks/s is ``tasks /
    bucketSeconds``), and up to 10 running, waiting and recently failed runs, newest first."""
    node = node_of(request)
    grants = node.iam.grants(principal)
    now = node.clock_ms()
    start = now - window * 1000
    samples: list[RunSample] = []
    truncated = False
    left_out = 0
    left_out_limit = node.settings.get_int("kiok.admin.http.list.scan.limit")
    for header in node.reader.run_headers_newest():
        if header["createdMs"] < start and header["endedMs"] is not None and header["endedMs"] < start:
            # Older runs that ended before the window only matter if some are still active,
            # and those are read from the active index below.
            break
        if len(samples) == SCAN_LIMIT or left_out == left_out_limit:
            truncated = True
            break
        if grants.allows(actions.LIST_RUNS, resources.run(header["dagId"], header["runId"])):
            samples.append(_sample(node, header, start))
        else:  # runs the caller may not see are read too: bounded as well
            left_out += 1
    seen = {s.run_id for s in samples}
    for header in node.reader.active_runs():
        if header["runId"] not in seen and grants.allows(
            actions.LIST_RUNS, resources.run(header["dagId"], header["runId"])
        ):
            samples.append(_sample(node, header, start))
    return dashboard_json(summarize(samples, now, window * 1000, buckets, truncated=truncated))
