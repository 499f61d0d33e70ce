"""``/api/v1/dags/{dagId}/grid``: a DAG's runs × tasks in a compact form for the UI's grid
(and scripts): the tasks in topological order, and per run one state letter per task. Pages
by runs (newest first, ``cursor``) and by tasks (``taskOffset``/``taskLimit``); ``runs``
re-reads just the given runs (the unfinished ones a client is watching)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from kiok.core.readiness import topological_order
from kiok.core.states import RunState, TaskRecord, TaskState
from kiok.core.waiting import presented
from kiok.dag.load import compiled_spec
from kiok.dag.spec import DagSpec
from kiok.errors import InvalidInput, NotFound
from kiok.ids import TaskId
from kiok.master.api.deps import node_of, require_anywhere
from kiok.master.auth import Principal
from kiok.master.views import iso
from kiok.security import actions, resources

router = APIRouter(prefix="/api/v1/dags", tags=["dags"])

#: One letter per task state; ``-``: the task is not in that run (another DAG version).
CODES: dict[str, str] = {
    TaskState.PENDING.value: "P",
    TaskState.QUEUED.value: "Q",
    TaskState.RUNNING.value: "R",
    TaskState.RETRYING.value: "U",
    TaskState.SUCCESS.value: "S",
    TaskState.FAILED.value: "F",
    TaskState.SKIPPED.value: "K",
    TaskState.CANCELLED.value: "C",
}
ABSENT = "-"
_MAX_RUN_IDS = 100


@router.get("/{dag_id}/grid", responses={404: {}})
async def grid(
    dag_id: str,
    request: Request,
    limit: int = Query(default=25, ge=1, le=100, description="runs per page"),
    cursor: str | None = Query(default=None, max_length=20, description="`nextCursor` of the previous page"),
    runs: str | None = Query(
        default=None,
        max_length=100 * 80,
        description="comma-separated run ids: only these runs (for re-polling unfinished ones)",
    ),
    taskOffset: int = Query(default=0, ge=0),
    taskLimit: int = Query(default=1000, ge=1, le=5000),
    principal: Principal = Depends(require_anywhere(actions.READ_RUN)),
) -> dict[str, Any]:
    """The DAG's runs (newest first) × its tasks (topological order). Each run has ``cells``:
    one letter per task of ``tasks`` (``codes`` maps them to states; ``-``: not in this run),
    ``attempts`` as ``[[taskIndex, attempt], ...]`` where the attempt is above 1, and per task
    the duration in ms and an index into ``workers`` (null where not started). Only runs the
    caller may read (``runs:Read`` on ``dag/<dagId>/run/<runId>``) are included; a DAG the
    caller can see nothing of is a 404, whether or not it exists."""
    node = node_of(request)
    grants = node.iam.grants(principal)

    def visible(run: dict[str, Any]) -> bool:
        return grants.allows(actions.READ_RUN, resources.run(run["dagId"], run["runId"]))

    next_seq: int | None = None
    if runs is not None:
        ids = [r for r in runs.split(",") if r][:_MAX_RUN_IDS]
        page = [
            r
            for r in (node.reader.run(i) for i in ids)
            if r is not None and r["dagId"] == dag_id and visible(r)
        ]
    else:
        seq = None
        if cursor is not None:
            if not (cursor.isascii() and cursor.isdigit()):
                raise InvalidInput("cursor: not a cursor returned by this endpoint")
            seq = int(cursor)
        page, next_seq = node.reader.runs(dag_id=dag_id, limit=limit, cursor=seq, visible=visible)

    record = node.reader.dag(dag_id)
    current: DagSpec | None = None
    if record is not None and grants.allows(actions.READ_DAG, resources.dag(dag_id)):
        current = compiled_spec(record["spec"])
    if current is None and not page and runs is None and cursor is None:
        raise NotFound(f"DAG {dag_id!r} not found")
    specs = {r["runId"]: node.run_spec(r["runId"]) for r in page}
    order = _task_order(current, [specs[r["runId"]] for r in page])
    shown = order[taskOffset : taskOffset + taskLimit]
    workers: list[str] = []
    now = node.clock_ms()
    return {
        "dagId": dag_id,
        "tasks": shown,
        "totalTasks": len(order),
        "taskOffset": taskOffset,
        "codes": {code: state for state, code in CODES.items()} | {ABSENT: None},
        "runs": [_row(r, specs[r["runId"]], shown, workers, now) for r in page],
        "workers": workers,
        "nextCursor": None if next_seq is None else str(next_seq),
    }


def _task_order(current: DagSpec | None, run_specs: list[DagSpec]) -> list[str]:
    """The current DAG's tasks in topological order, then those only older runs have."""
    order: list[str] = []
    seen: set[str] = set()
    for spec in ([current] if current is not None else []) + run_specs:
        for task in topological_order(spec):
            if task.id not in seen:
                seen.add(task.id)
                order.append(task.id)
    return order


def _row(
    run: dict[str, Any], spec: DagSpec, tasks: list[str], workers: list[str], now_ms: int
) -> dict[str, Any]:
    records = presented(
        spec,
        {TaskId(t): TaskRecord.from_dict(r) for t, r in run["tasks"].items()},
        driven=run["state"] == RunState.RUNNING.value and run["worker"] is not None,
    )
    cells: list[str] = []
    attempts: list[list[int]] = []
    durations: list[int | None] = []
    where: list[int | None] = []
    for i, tid in enumerate(tasks):
        rec = records.get(TaskId(tid))
        if rec is None:
            cells.append(ABSENT)
            durations.append(None)
            where.append(None)
            continue
        cells.append(CODES[rec.state.value])
        if rec.attempt > 1:
            attempts.append([i, rec.attempt])
        durations.append(
            None
            if rec.started_at_ms is None
            else (rec.ended_at_ms if rec.ended_at_ms is not None else now_ms) - rec.started_at_ms
        )
        if rec.worker is None:
            where.append(None)
        else:
            if rec.worker not in workers:
                workers.append(rec.worker)
            where.append(workers.index(rec.worker))
    return {
        "runId": run["runId"],
        "state": run["state"],
        "createdAt": iso(run["createdMs"]),
        "startedAt": iso(run["startedMs"]),
        "endedAt": iso(run["endedMs"]),
        "cells": "".join(cells),
        "attempts": attempts,
        "durationsMs": durations,
        "workerIndex": where,
    }
