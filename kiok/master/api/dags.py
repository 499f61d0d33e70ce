"""``/api/v1/dags``: register (YAML or JSON body), list, read, delete, pause, trigger."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, Field

from kiok.dag.load import spec_from_body
from kiok.errors import MaintenanceMode, NotFound
from kiok.master.api.deps import node_of, require, require_anywhere
from kiok.master.auth import Principal
from kiok.master.views import dag_view
from kiok.security import actions, resources
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
    args: dict[str, Any] = Field(default_factory=dict)


@router.get("")
async def list_dags(
    request: Request, principal: Principal = Depends(require_anywhere(actions.LIST_DAGS))
) -> dict[str, Any]:
    """The DAGs the caller may list (``dags:List`` on ``dag/<dagId>``)."""
    node = node_of(request)
    grants = node.iam.grants(principal)
    return {
        "dags": [
            dag_view(r)
            for r in node.reader.dags()
            if grants.allows(actions.LIST_DAGS, resources.dag(r["spec"]["dag"]["id"]))
        ]
    }


@router.post("", status_code=201, openapi_extra=_DAG_BODY, responses={400: {}, 413: {}})
async def register_dag(
    request: Request, principal: Principal = Depends(require_anywhere(actions.REGISTER_DAG))
) -> dict[str, Any]:
    """Register or replace a DAG (``dags:Register`` on ``dag/<its id>``). An invalid DAG is
    refused whole (the previous version stays); the message names the offending field."""
    node = node_of(request)
    body = await request.body()
    spec = spec_from_body(body, request.headers.get("content-type"))
    node.iam.authorize(principal, actions.REGISTER_DAG, resources.dag(spec.id))
    result = await node.log.propose(
        c.RegisterDag(at_ms=node.clock_ms(), spec=spec.to_dict(), source=body.decode(errors="replace"))
    )
    return {"registered": result["registered"], "version": result["version"]}


def _dag(request: Request, dag_id: str) -> dict[str, Any]:
    record = node_of(request).reader.dag(dag_id)
    if record is None:
        raise NotFound(f"DAG {dag_id!r} not found")
    return record


@router.get("/{dag_id}", responses={404: {}})
async def get_dag(
    dag_id: str, request: Request, _: Principal = Depends(require(actions.READ_DAG, "dag/{dag_id}"))
) -> dict[str, Any]:
    return dag_view(_dag(request, dag_id), full=True)


@router.delete("/{dag_id}", responses={404: {}})
async def delete_dag(
    dag_id: str, request: Request, _: Principal = Depends(require(actions.DELETE_DAG, "dag/{dag_id}"))
) -> dict[str, Any]:
    """Delete a DAG; its run history stays readable."""
    node = node_of(request)
    return await node.log.propose(c.DeleteDag(at_ms=node.clock_ms(), dag_id=dag_id))  # type: ignore[no-any-return]


@router.post("/{dag_id}/pause", responses={404: {}})
async def pause_dag(
    dag_id: str, request: Request, _: Principal = Depends(require(actions.PAUSE_DAG, "dag/{dag_id}"))
) -> dict[str, Any]:
    node = node_of(request)
    return await node.log.propose(c.SetDagPaused(at_ms=node.clock_ms(), dag_id=dag_id, paused=True))  # type: ignore[no-any-return]


@router.post("/{dag_id}/unpause", responses={404: {}})
async def unpause_dag(
    dag_id: str, request: Request, _: Principal = Depends(require(actions.PAUSE_DAG, "dag/{dag_id}"))
) -> dict[str, Any]:
    node = node_of(request)
    return await node.log.propose(c.SetDagPaused(at_ms=node.clock_ms(), dag_id=dag_id, paused=False))  # type: ignore[no-any-return]


@router.post(
    "/{dag_id}/runs",
    status_code=201,
    responses={
        404: {},
        409: {"description": "the DAG is paused"},
        503: {"description": "maintenance mode is on (`Retry-After`, `maintenanceMode: true`)"},
    },
)
async def trigger(
    dag_id: str,
    request: Request,
    body: TriggerRequest | None = Body(default=None),
    _: Principal = Depends(require(actions.TRIGGER_DAG, "dag/{dag_id}")),
) -> dict[str, Any]:
    """Trigger a run; ``args`` override the DAG's ``params``. Refused in maintenance mode."""
    node = node_of(request)
    args = body.args if body is not None else {}
    try:
        return await node.log.propose(c.CreateRun(at_ms=node.clock_ms(), dag_id=dag_id, args=args))  # type: ignore[no-any-return]
    except MaintenanceMode as e:
        raise MaintenanceMode(e.message, node.maintenance_retry_after_s) from None
