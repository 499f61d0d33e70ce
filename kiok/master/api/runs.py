"""``/api/v1/runs``: list, read (with why each task waits), cancel, delete a finished run,
and logs by offset."""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from kiok.core.instants import parse_instant_ms
from kiok.core.states import TERMINAL_RUN_STATES, TERMINAL_TASK_STATES, RunState
from kiok.errors import InvalidInput, NotFound
from kiok.ids import RUN_LOG_TASK
from kiok.master.api.deps import client_address, node_of, require, require_anywhere
from kiok.master.auth import Principal
from kiok.master.views import run_fields, run_view
from kiok.security import actions, resources
from kiok.store import commands as c
from kiok.store.reader import RunQuery

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])


def _run(request: Request, run_id: str) -> dict[str, Any]:
    run = node_of(request).reader.run(run_id)
    if run is None:
        raise NotFound(f"run {run_id!r} not found")
    return run


def _run_resource(request: Request) -> str:
    """``dag/<dagId>/run/<runId>``; for an unknown run, the DAG its id names (so an unknown
    run is refused like a run the caller may not see, not told apart by a 404). Worked out
    once per request (``_sees_output`` checks a second action on it)."""
    known: str | None = getattr(request.state, "run_resource", None)
    if known is not None:
        return known
    run_id = request.path_params["run_id"]
    header = node_of(request).reader.run_header(run_id)
    name = resources.run(header["dagId"] if header else resources.dag_of_run_id(run_id), run_id)
    request.state.run_resource = name
    return name


def _sees_output(request: Request, principal: Principal) -> bool:
    """Whether the caller may read the run's task output: ``logs:Read`` on the run, as for
    its logs. A run view shows output only in a task's ``error`` (a python task's last
    output line); without it, the view shows kiok's own part of the error."""
    return node_of(request).iam.grants(principal).allows(actions.READ_LOG, _run_resource(request))


def _view(request: Request, run: dict[str, Any], principal: Principal) -> dict[str, Any]:
    node = node_of(request)
    spec = node.run_spec(run["runId"])
    waiting = node.coordinator.waiting.get(run["runId"])
    return run_view(run, spec, waiting, node.clock_ms(), output=_sees_output(request, principal))


def _answer(request: Request, run: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """The run as an action on it (cancel, re-run) leaves it: the whole view for a caller who
    may read the run (``runs:Read``), else only its id, DAG and state. Cancelling a cancelled
    run changes nothing, so with the view ``runs:Cancel`` alone would read any such run."""
    if node_of(request).iam.grants(principal).allows(actions.READ_RUN, _run_resource(request)):
        return _view(request, run, principal)
    return {"runId": run["runId"], "dagId": run["dagId"], "state": run["state"]}


def _summary(request: Request, header: dict[str, Any]) -> dict[str, Any]:
    """A run in a list: its own fields and its task counts by state, no task records."""
    node = node_of(request)
    counts = header.get("taskCounts")
    if counts is None:  # a header the index build has not reached (it runs at start-up)
        run = node.reader.run(header["runId"]) or {"tasks": {}}
        counts = dict(Counter(t["state"] for t in run["tasks"].values()))
    return {
        **run_fields(header, node.coordinator.waiting.get(header["runId"])),
        "taskCounts": dict(counts),
        "tasksTotal": sum(counts.values()),
    }


@router.get("")
async def list_runs(
    request: Request,
    dag: str | None = Query(default=None, max_length=200),
    state: str | None = Query(default=None, max_length=20),
    since: str | None = Query(default=None, max_length=40, description="created at or after"),
    until: str | None = Query(default=None, max_length=40, description="created before"),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=20),
    principal: Principal = Depends(require_anywhere(actions.LIST_RUNS)),
) -> dict[str, Any]:
    """Run summaries (task counts by state, no task records), newest first, of the DAGs
    whose runs the caller may list (``runs:List`` on ``dag/<dagId>/run/<runId>``),
    optionally of one DAG, one state, created in ``[since, until)``. Pass ``nextCursor``
    back as ``cursor`` (with the same filters) for the next page. A page reads at most
    ``kiok.admin.http.list.scan.limit`` runs it leaves out: it may hold fewer than ``limit``
    runs (even none) and still have a ``nextCursor``."""
    if state is not None and state.upper() not in {s.value for s in RunState}:
        raise InvalidInput(
            f"state: unknown run state {state!r}; one of {', '.join(s.value for s in RunState)}"
        )
    seq: int | None = None
    if cursor is not None:
        if not (cursor.isascii() and cursor.isdigit()):
            raise InvalidInput("cursor: not a cursor returned by this endpoint")
        seq = int(cursor)
    query = RunQuery(
        dag_id=dag,
        state=state.upper() if state else None,
        since_ms=None if since is None else parse_instant_ms(since, "since"),
        until_ms=None if until is None else parse_instant_ms(until, "until"),
    )
    node = node_of(request)
    grants = node.iam.grants(principal)
    if dag is not None and not grants.allows_under(actions.LIST_RUNS, resources.run(dag, "")):
        # None of its runs may be listed: an empty page at once, as for a DAG without runs
        # (reading them would tell by its time and its cursor how long its history is).
        return {"runs": [], "nextCursor": None}
    headers, next_seq = node.reader.run_page(
        query,
        limit=limit,
        cursor=seq,
        visible=lambda r: grants.allows(actions.LIST_RUNS, resources.run(r["dagId"], r["runId"])),
        scan_limit=node.settings.get_int("kiok.admin.http.list.scan.limit"),
    )
    return {
        "runs": [_summary(request, h) for h in headers],
        "nextCursor": None if next_seq is None else str(next_seq),
    }


@router.get("/{run_id}", responses={404: {}}, response_model=None)
async def get_run(
    run_id: str,
    request: Request,
    since: int | None = Query(
        default=None,
        ge=0,
        le=2**53,
        description="a `version` of this run read before: only the tasks changed after it",
    ),
    principal: Principal = Depends(require(actions.READ_RUN, _run_resource)),
) -> Response:
    """The run with its tasks and why each waits, at ``version``. With ``since``, the run's
    fields and only the tasks whose view changed after that version (``"full": false``);
    the whole run (``"full": true``) when ``since`` is not a version the run can be
    brought up from (unknown, or older than a change of the run's state or driver). Without
    ``logs:Read`` on the run, a task's ``error`` quotes nothing of its output."""
    body = node_of(request).run_views.read(run_id, since, output=_sees_output(request, principal))
    return Response(content=body, media_type="application/json")


@router.post("/{run_id}/cancel", responses={404: {}, 409: {"description": "the run already ended"}})
async def cancel_run(
    run_id: str,
    request: Request,
    principal: Principal = Depends(require(actions.CANCEL_RUN, _run_resource)),
) -> dict[str, Any]:
    """Cancel a run: queued tasks are cancelled, running ones have their whole process group
    signalled (SIGTERM, then SIGKILL after the grace period). Answers the run (``_answer``)."""
    node = node_of(request)
    before = _run(request, run_id)
    await node.log.propose(c.CancelRun(at_ms=node.clock_ms(), run_id=run_id, by=principal.user))
    if before["state"] not in ("SUCCESS", "FAILED", "CANCELLED"):  # its run-log line: apply()'s
        node.audit.record(principal.user, actions.CANCEL_RUN, run_id, client_address(request))
    return _answer(request, _run(request, run_id), principal)


class RerunRequestBody(BaseModel):
    """``from``: re-run that task and everything downstream of it; without it, ``onlyFailed``
    re-runs the tasks that did not succeed and their downstream (false: every task)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", strict=True)
    from_task: str | None = Field(default=None, alias="from", max_length=200)
    onlyFailed: bool = True


@router.post(
    "/{run_id}/rerun",
    responses={
        400: {"description": "the run's DAG has no such task"},
        404: {},
        409: {"description": "the run has not ended, nothing is left to re-run, or its DAG was deleted"},
    },
)
async def rerun(
    run_id: str,
    request: Request,
    body: RerunRequestBody | None = Body(default=None),
    principal: Principal = Depends(require(actions.RERUN_RUN, _run_resource)),
) -> dict[str, Any]:
    """Re-run a finished run in place: the chosen tasks run again (as new attempts), the
    others keep their results. The run is queued like a new one (PENDING, within the DAG's
    pending-run quota), then RUNNING until they end. A run of a deleted DAG is not re-run:
    deleting a DAG stops its triggers, and a re-run is one (registering it again allows it)."""
    node = node_of(request)
    req = body or RerunRequestBody()
    dag_id = _run(request, run_id)["dagId"]
    async with node.pending_quota.admit(dag_id, 1):
        result = await node.log.propose(
            c.RerunRun(
                at_ms=node.clock_ms(),
                run_id=run_id,
                from_task=req.from_task,
                only_failed=req.onlyFailed,
                by=principal.user,
                queued=True,
                fresh_sla=True,
                dag_must_exist=True,
            )
        )
    what = (
        f"from {req.from_task}"
        if req.from_task
        else ("of failed tasks" if req.onlyFailed else "of all tasks")
    )
    node.run_log(
        run_id, f"re-run requested by {principal.user} {what}; to run again: {', '.join(result['tasks'])}"
    )
    return {"rerun": result["tasks"], **_answer(request, _run(request, run_id), principal)}


@router.delete("/{run_id}", responses={404: {}, 409: {"description": "the run has not finished"}})
async def delete_run(
    run_id: str, request: Request, principal: Principal = Depends(require(actions.DELETE_RUN, _run_resource))
) -> dict[str, Any]:
    """Delete a finished run with its task records and job logs (a running or pending run
    gets 409: cancel it first). Deleting it again gets 404. Audited: what it destroys is
    gone for good."""
    node = node_of(request)
    await node.log.propose(
        c.DeleteRuns(at_ms=node.clock_ms(), run_ids=(run_id,), strict=True, drop_notifications=True)
    )
    node.audit.record(principal.user, actions.DELETE_RUN, run_id, client_address(request))
    return {"deleted": run_id}


@router.get("/{run_id}/tasks/{task_id}/log", responses={404: {}})
async def read_log(
    run_id: str,
    task_id: str,
    request: Request,
    # A log holds far less than 2**53 bytes: no offset a JSON client cannot hold exactly.
    offset: int = Query(default=0, ge=0, le=2**53 - 1),
    limit: int = Query(default=1024 * 1024, ge=1, le=4 * 1024 * 1024),
    _: Principal = Depends(require(actions.READ_LOG, _run_resource)),
) -> dict[str, Any]:
    """Log bytes from ``offset``; read again from ``nextOffset``. ``complete`` is true once
    the task (for ``__run__``: the run) has finished and everything is stored."""
    node = node_of(request)
    run = _run(request, run_id)
    if task_id != RUN_LOG_TASK and task_id not in run["tasks"]:
        raise NotFound(f"run {run_id!r} has no task {task_id!r}")
    if task_id == RUN_LOG_TASK:
        finished = run["state"] in TERMINAL_RUN_STATES
    else:
        finished = (
            run["tasks"][task_id]["state"] in TERMINAL_TASK_STATES or run["state"] in TERMINAL_RUN_STATES
        )
    # In a thread: archived bytes come from S3 (a blocking call). An ended log's last bytes
    # come even when they begin a character never finished: nothing more will complete it.
    data, next_offset = await asyncio.to_thread(
        functools.partial(node.joblog.read, run_id, task_id, offset, limit, ended=finished)
    )
    complete = finished and next_offset >= node.joblog.size(run_id, task_id)
    return {
        "data": data.decode(errors="replace"),
        "offset": offset,
        "nextOffset": next_offset,
        "complete": complete,
    }
