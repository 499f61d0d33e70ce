"""``/api/v1/dags/{dagId}/grid``: a DAG's runs × tasks in a compact form for the UI's grid
(and scripts): the tasks in topological order, and per run one state letter per task. Pages
by runs (newest first, ``cursor``) and by tasks (``taskOffset``/``taskLimit``); ``runs``
re-reads just the given runs (the unfinished ones a client is watching). The columns of
finished runs come encoded from ``kiok.master.grid_columns``: a page of them costs about a
header read per run."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from kiok.core.readiness import topological_order
from kiok.dag.load import compiled_spec
from kiok.dag.spec import DagSpec
from kiok.errors import InvalidInput, NotFound
from kiok.master.api.deps import node_of, require_anywhere
from kiok.master.auth import Principal
from kiok.master.grid_columns import ABSENT, CODES, GridColumns
from kiok.security import actions, resources
from kiok.store.reader import RunQuery

router = APIRouter(prefix="/api/v1/dags", tags=["dags"])

_MAX_RUN_IDS = 100
_CODES_JSON = json.dumps({code: state for state, code in CODES.items()} | {ABSENT: None}).encode()
#: The response header that says how many of the reply's columns came from the cache.
CACHED_HEADER = "X-Kiok-Grid-Cached"


def columns_of(request: Request) -> GridColumns:
    """This app's column cache, made on first use (it follows the node's command log for
    deleted runs)."""
    state = request.app.state
    cache: GridColumns | None = getattr(state, "grid_columns", None)
    if cache is None:
        node = node_of(request)
        cache = GridColumns(node.reader, node.run_spec, node.clock_ms)
        node.log.subscribe(cache.on_effects)
        state.grid_columns = cache
    return cache


@router.get("/{dag_id}/grid", responses={404: {}}, response_model=None)
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
) -> Response:
    """The DAG's runs (newest first) × its tasks (topological order). Each run has ``cells``:
    one letter per task of ``tasks`` (``codes`` maps them to states; ``-``: not in this run),
    ``attempts`` as ``[[taskIndex, attempt], ...]`` where the attempt is above 1, and per task
    the duration in ms and an index into the run's ``workers`` (null where not started). Only
    runs the caller may read (``runs:Read`` on ``dag/<dagId>/run/<runId>``) are included; a
    DAG the caller can see nothing of is a 404, whether or not it exists."""
    began = time.perf_counter()
    node = node_of(request)
    grants = node.iam.grants(principal)

    def visible(run: dict[str, Any]) -> bool:
        return grants.allows(actions.READ_RUN, resources.run(run["dagId"], run["runId"]))

    record = node.reader.dag(dag_id)
    current: DagSpec | None = None
    if record is not None and grants.allows(actions.READ_DAG, resources.dag(dag_id)):
        current = compiled_spec(record["spec"])
    if current is None and not grants.allows_under(actions.READ_RUN, resources.run(dag_id, "")):
        # Nothing of it can be shown: answered as a missing DAG at once, without reading its
        # runs (a DAG with a long history would otherwise take longer to say so).
        raise NotFound(f"DAG {dag_id!r} not found")
    query = RunQuery(dag_id=dag_id)
    scan_limit = node.settings.get_int("kiok.admin.http.list.scan.limit")
    next_seq: int | None = None
    if runs is not None:
        ids = [r for r in runs.split(",") if r]
        if len(ids) > _MAX_RUN_IDS:
            raise InvalidInput(f"query.runs: {len(ids)} run ids; at most {_MAX_RUN_IDS}")
        page = [
            h
            for h in (node.reader.run_header(i) for i in ids)
            if h is not None and h["dagId"] == dag_id and visible(h)
        ]
    else:
        seq = None
        if cursor is not None:
            if not (cursor.isascii() and cursor.isdigit()):
                raise InvalidInput("cursor: not a cursor returned by this endpoint")
            seq = int(cursor)
        page, next_seq = node.reader.run_page(
            query, limit=limit, cursor=seq, visible=visible, scan_limit=scan_limit
        )

    if current is None and not page:
        # Only ``dags:Read`` or a readable run makes the DAG visible; a first page that read
        # its whole scan limit without finding one cannot tell, and answers as the run list
        # does (no runs, and the cursor to look further). A ``runs`` or ``cursor`` request
        # asks what the first page would, so that an invisible DAG answers it as a missing
        # one does.
        if runs is None and cursor is None:
            may_show = next_seq is not None
        else:
            first, after_first = node.reader.run_page(query, limit=1, visible=visible, scan_limit=scan_limit)
            may_show = bool(first) or after_first is not None
        if not may_show:
            raise NotFound(f"DAG {dag_id!r} not found")
    order = _task_order(current, [node.run_spec(h["runId"]) for h in page])
    shown = order[taskOffset : taskOffset + taskLimit]
    cache = columns_of(request)
    hits = cache.hits
    columns = [c for c in (cache.encoded(h, shown) for h in page) if c is not None]
    head = {"dagId": dag_id, "tasks": shown, "totalTasks": len(order), "taskOffset": taskOffset}
    tail = {"nextCursor": None if next_seq is None else str(next_seq)}
    body = b"".join(
        (
            json.dumps(head, separators=(",", ":"), allow_nan=False)[:-1].encode(),
            b',"codes":',
            _CODES_JSON,
            b',"runs":[',
            b",".join(columns),
            b"],",
            json.dumps(tail, separators=(",", ":"), allow_nan=False)[1:].encode(),
        )
    )
    took_ms = (time.perf_counter() - began) * 1000
    return Response(
        content=body,
        media_type="application/json",
        headers={
            CACHED_HEADER: f"{cache.hits - hits}/{len(columns)}",
            "Server-Timing": f"grid;dur={took_ms:.1f}",
        },
    )


def _task_order(current: DagSpec | None, run_specs: list[DagSpec]) -> list[str]:
    """The current DAG's tasks in topological order, then those only older runs have (a run
    whose tasks are all listed already is not sorted again: most runs share the DAG's)."""
    order: list[str] = []
    seen: set[str] = set()
    for spec in ([current] if current is not None else []) + run_specs:
        if all(t in seen for t in spec.task_ids):
            continue
        for task in topological_order(spec):
            if task.id not in seen:
                seen.add(task.id)
                order.append(task.id)
    return order
