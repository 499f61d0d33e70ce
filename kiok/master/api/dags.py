"""``/api/v1/dags``: register (YAML or JSON body), list, read, delete, pause, trigger."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from kiok.core.backfill import backfill_intervals, parse_bound
from kiok.core.placement import is_integer, shell_value_problem, value_problem
from kiok.dag.load import compiled_spec, spec_from_body
from kiok.dag.locate import line_of
from kiok.dag.notify import NotifyEvent, WebhookTarget
from kiok.dag.params import check_args, env_name
from kiok.dag.spec import DagSpec
from kiok.errors import DagValidationError, InvalidInput, MaintenanceMode, NotFound
from kiok.master.api import dag_list
from kiok.master.api.deps import client_address, node_of, require, require_anywhere
from kiok.master.auth import Principal
from kiok.master.views import dag_view, iso
from kiok.security import actions, resources
from kiok.security.egress import Network, literal_host_problem
from kiok.store import commands as c

router = APIRouter(prefix="/api/v1/dags", tags=["dags"])

_DAG_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object", "required": ["dag", "tasks"]}},
        },
    }
}


class TriggerRequest(BaseModel):
    #: An unknown field (``{"arg": ...}``) is refused: ignoring it would start a run with the
    #: DAG's defaults instead of the args the caller meant.
    model_config = ConfigDict(extra="forbid", strict=True)
    args: dict[str, Any] = Field(default_factory=dict)


@router.get("")
async def list_dags(
    request: Request,
    lastRuns: int = Query(default=0, ge=0, le=50, description="Add each DAG's newest runs (headers)."),
    principal: Principal = Depends(require_anywhere(actions.LIST_DAGS)),
) -> dict[str, Any]:
    """The DAGs the caller may list (``dags:List`` on ``dag/<dagId>``), each with
    ``nextFireAt`` (its next scheduled time; null when manual-only or paused) and, with
    ``lastRuns=N``, its newest N runs the caller may list (id, state, times; no tasks)."""
    node = node_of(request)
    grants = node.iam.grants(principal)
    now = node.clock_ms()
    may_list_runs = grants.checker(actions.LIST_RUNS)
    out = []
    for kept in node.dag_views.all():
        dag_id = kept["dagId"]
        if not grants.allows(actions.LIST_DAGS, resources.dag(dag_id)):
            continue
        view = dict(kept)
        view["nextFireAt"] = dag_list.next_fire_at(view, now)
        if lastRuns:
            view["lastRuns"] = dag_list.last_runs(node.recent_runs, may_list_runs, dag_id, lastRuns)
        out.append(view)
    return {"dags": out}


@router.post("", status_code=201, openapi_extra=_DAG_BODY, responses={400: {}, 413: {}})
async def register_dag(
    request: Request, principal: Principal = Depends(require_anywhere(actions.REGISTER_DAG))
) -> dict[str, Any]:
    """Register or replace a DAG (``dags:Register`` on ``dag/<its id>``, and
    ``connections:Use`` on each connection it refers to). An invalid DAG is refused whole (the
    previous version stays); the message names the offending field. Parsing and validating
    run in a worker thread, within the limits of ``kiok.dag.load``, so a large document does
    not hold up the event loop. A webhook whose host is a literal address in
    ``kiok.notify.webhook.blocked.networks`` (or ``localhost``) is refused here; names are
    checked when the webhook is sent."""
    node = node_of(request)
    body = await request.body()
    spec = await run_in_threadpool(_compile, body, request.headers.get("content-type"))
    try:
        _refuse_blocked_webhooks(spec, node.webhook_blocked_networks)
    except DagValidationError as e:
        e.line = line_of(body.decode(errors="replace"), e.field)
        raise
    node.iam.authorize(principal, actions.REGISTER_DAG, resources.dag(spec.id))
    for conn_id in sorted(spec.connections_used()):
        node.iam.authorize(principal, actions.USE_CONNECTION, resources.connection(conn_id))
    result = await node.log.propose(
        c.RegisterDag(
            at_ms=node.clock_ms(),
            spec=spec.to_dict(),
            source=body.decode(errors="replace"),
            by=principal.user,
            keep_versions=max(1, node.settings.get_int("kiok.dag.versions.keep")),
        )
    )
    return {"registered": result["registered"], "version": result["version"], "changed": result["changed"]}


def _compile(body: bytes, content_type: str | None) -> DagSpec:
    """``spec_from_body``, with the line of a refused field located (YAML knows it already)."""
    try:
        return spec_from_body(body, content_type)
    except DagValidationError as e:
        if e.line is None:
            e.line = line_of(body.decode(errors="replace"), e.field)
        raise


def _refuse_blocked_webhooks(spec: DagSpec, blocked: tuple[Network, ...]) -> None:
    """``DagValidationError`` (400) naming the first webhook whose URL's host alone puts it in
    ``blocked``: it would be refused at every send."""
    for event in NotifyEvent:
        for i, target in enumerate(spec.notify.targets(event)):
            if isinstance(target, WebhookTarget):
                problem = literal_host_problem(target.url, blocked)
                if problem is not None:
                    raise DagValidationError(problem, field=f"dag.notify.{event.value}[{i}].webhook.url")


def _dag(request: Request, dag_id: str) -> dict[str, Any]:
    record = node_of(request).reader.dag(dag_id)
    if record is None:
        raise NotFound(f"DAG {dag_id!r} not found")
    return record


@router.get("/{dag_id}", responses={404: {}})
async def get_dag(
    dag_id: str, request: Request, _: Principal = Depends(require(actions.READ_DAG, "dag/{dag_id}"))
) -> dict[str, Any]:
    """The DAG's summary as the list shows it (``nextFireAt`` included), with its spec and
    source."""
    view = dag_view(_dag(request, dag_id), full=True)
    view["nextFireAt"] = dag_list.next_fire_at(view, node_of(request).clock_ms())
    return view


@router.delete("/{dag_id}", responses={404: {}})
async def delete_dag(
    dag_id: str, request: Request, principal: Principal = Depends(require(actions.DELETE_DAG, "dag/{dag_id}"))
) -> dict[str, Any]:
    """Delete a DAG; its run history stays readable. Audited."""
    node = node_of(request)
    result: dict[str, Any] = await node.log.propose(c.DeleteDag(at_ms=node.clock_ms(), dag_id=dag_id))
    node.audit.record(principal.user, actions.DELETE_DAG, dag_id, client_address(request))
    return result


@router.post("/{dag_id}/pause", responses={404: {}})
async def pause_dag(
    dag_id: str, request: Request, principal: Principal = Depends(require(actions.PAUSE_DAG, "dag/{dag_id}"))
) -> dict[str, Any]:
    """Stop the schedule (and manual triggers) of a DAG. Audited, as ``dags:Pause``."""
    return await _set_paused(request, principal, dag_id, paused=True)


@router.post("/{dag_id}/unpause", responses={404: {}})
async def unpause_dag(
    dag_id: str, request: Request, principal: Principal = Depends(require(actions.PAUSE_DAG, "dag/{dag_id}"))
) -> dict[str, Any]:
    """Start the schedule again (missed intervals follow the catch-up rules). Audited."""
    return await _set_paused(request, principal, dag_id, paused=False)


async def _set_paused(request: Request, principal: Principal, dag_id: str, *, paused: bool) -> dict[str, Any]:
    node = node_of(request)
    result: dict[str, Any] = await node.log.propose(
        c.SetDagPaused(at_ms=node.clock_ms(), dag_id=dag_id, paused=paused)
    )
    node.audit.record(
        principal.user,
        actions.PAUSE_DAG,
        dag_id,
        client_address(request),
        detail="paused" if paused else "unpaused",
    )
    return result


@router.post(
    "/{dag_id}/runs",
    status_code=201,
    responses={
        404: {},
        409: {
            "description": "the DAG is paused, or has kiok.scheduler.max.pending.runs.per.dag runs waiting"
        },
        503: {"description": "maintenance mode is on (`Retry-After`, `maintenanceMode: true`)"},
    },
)
async def trigger(
    dag_id: str,
    request: Request,
    body: TriggerRequest | None = Body(default=None),
    principal: Principal = Depends(require(actions.TRIGGER_DAG, "dag/{dag_id}")),
) -> dict[str, Any]:
    """Trigger a run; ``args`` override the DAG's ``params``. Refused in maintenance mode."""
    node = node_of(request)
    args = body.args if body is not None else {}
    # Integers alone, each on a variable of its own: nothing a shell task could not take, and
    # nothing the params' rules decide differently in apply() (which checks them again): no
    # thread hop for them. Two extra args on one variable are refused only here (apply()
    # takes what was taken before that check existed): ab=1 and AB=2 had both been taken.
    if not all(is_integer(value) for value in args.values()) or len({env_name(n) for n in args}) < len(args):
        await run_in_threadpool(_refuse_args, node.reader.dag(dag_id), args)
    try:
        cmd = c.CreateRun(
            at_ms=node.clock_ms(),
            dag_id=dag_id,
            args=args,
            trace=node.tracing.current_traceparent(),
            by=principal.user,
        )
        async with node.pending_quota.admit(dag_id, 1):
            return await node.log.propose(cmd)  # type: ignore[no-any-return]
    except MaintenanceMode as e:
        raise MaintenanceMode(e.message, node.maintenance_retry_after_s) from None


def _refuse_args(record: dict[str, Any] | None, args: dict[str, Any]) -> None:
    """A 400 for args the DAG's params refuse (``apply()`` checks them again, as stored), or
    that a shell task could not take: text bash could expand, which it would run as code
    where the value becomes part of a name or a subscript, or text where a task places it in
    arithmetic or a variable name
    (``kiok.core.placement``). Its attempts would fail, so no run is made. Checked here,
    before the command is proposed, not in ``apply()``: replicas of another version must not
    decide a trigger differently."""
    if record is None:
        return
    spec = compiled_spec(record["spec"])
    checked = check_args(spec.params, spec.param_rules, spec.allow_extra_args, args)  # its errors first
    if not spec.has_shell_tasks:
        return
    restrictions = spec.shell_restrictions
    for name, value in checked.items():
        problem = shell_value_problem(name, value)
        if problem is None and name in restrictions:
            task, restriction = restrictions[name]
            problem = value_problem(name, value, restriction)
            if problem is not None:
                problem = f"task {task!r}: {problem}"
        if problem is not None:
            raise InvalidInput(f"args.{name}: {problem}")


def _version_view(record: dict[str, Any], *, full: bool) -> dict[str, Any]:
    view = {
        "version": record["version"],
        "registeredAt": iso(record["registeredMs"]),
        "by": record["by"] or None,
        "sourceHash": record["sourceHash"],
    }
    if full:
        view["spec"] = record["spec"]
        view["source"] = record["source"]
    return view


@router.get("/{dag_id}/versions", responses={404: {}})
async def list_versions(
    dag_id: str, request: Request, _: Principal = Depends(require(actions.READ_DAG, "dag/{dag_id}"))
) -> dict[str, Any]:
    """The DAG's registered versions, newest first (the newest ``kiok.dag.versions.keep``);
    ``GET .../versions/{version}`` has each one's source. Re-registering an unchanged spec
    adds none. A run's ``dagVersion`` says which one it ran."""
    node = node_of(request)
    versions = node.reader.dag_versions(dag_id)
    if not versions and node.reader.dag(dag_id) is None:
        raise NotFound(f"DAG {dag_id!r} not found")
    return {"dagId": dag_id, "versions": [_version_view(v, full=False) for v in versions]}


@router.get("/{dag_id}/versions/{version}", responses={404: {}})
async def get_version(
    dag_id: str,
    version: int,
    request: Request,
    _: Principal = Depends(require(actions.READ_DAG, "dag/{dag_id}")),
) -> dict[str, Any]:
    record = node_of(request).reader.dag_version(dag_id, version)
    if record is None:
        raise NotFound(f"DAG {dag_id!r} has no version {version} (never registered, or no longer kept)")
    return {"dagId": dag_id, **_version_view(record, full=True)}


class BackfillRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", strict=True)
    from_: str = Field(alias="from", max_length=40)
    to: str = Field(max_length=40)


@router.post(
    "/{dag_id}/backfill",
    status_code=201,
    responses={
        400: {"description": "no schedule, a bad date, or too many intervals"},
        404: {},
        409: {
            "description": "the DAG is paused, or has kiok.scheduler.max.pending.runs.per.dag runs waiting"
        },
        503: {"description": "maintenance mode is on"},
    },
)
async def backfill(
    dag_id: str,
    body: BackfillRequest,
    request: Request,
    principal: Principal = Depends(require(actions.TRIGGER_DAG, "dag/{dag_id}")),
) -> dict[str, Any]:
    """One run per cron interval whose start lies in ``[from, to]`` (dates in the DAG's time
    zone; a bare ``to`` date takes the whole day), each stamped with its ``interval``.
    Idempotent: an interval that already has a run (backfilled or scheduled) gets none; those
    are counted in ``existingCount``, and ``existing`` names only the ones the caller may read
    (``runs:Read``): triggering a DAG is no way to learn its run ids."""
    node = node_of(request)
    record = _dag(request, dag_id)
    dag = record["spec"]["dag"]
    if not dag.get("schedule"):
        raise InvalidInput(f"DAG {dag_id!r} has no schedule: there are no intervals to backfill")
    tz = dag.get("timezone", "UTC")
    plan = backfill_intervals(
        dag["schedule"],
        tz,
        parse_bound(body.from_, tz, "from", end=False),
        parse_bound(body.to, tz, "to", end=True),
        node.clock_ms(),
        max_runs=node.settings.get_int("kiok.scheduler.backfill.max.runs"),
    )
    new_runs = sum(1 for start, _ in plan.intervals if node.reader.scheduled_run(dag_id, start) is None)
    try:
        async with node.pending_quota.admit(dag_id, new_runs):
            result = await node.log.propose(
                c.Backfill(at_ms=node.clock_ms(), dag_id=dag_id, intervals=plan.intervals, by=principal.user)
            )
    except MaintenanceMode as e:
        raise MaintenanceMode(e.message, node.maintenance_retry_after_s) from None
    grants = node.iam.grants(principal)
    existing: list[str] = result["existing"]
    return {
        "dagId": dag_id,
        "intervals": len(plan.intervals),
        "created": result["created"],
        "existing": [r for r in existing if grants.allows(actions.READ_RUN, resources.run(dag_id, r))],
        "existingCount": len(existing),
        "future": plan.future,
    }
