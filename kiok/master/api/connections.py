"""``/api/v1/connections``: credentials tasks refer to as ``${conn.<id>.<key>}`` or
``${secret.<name>}`` (= ``${conn.<name>.value}``). Values go in and never come out: every
answer shows property names with ``***`` for the values."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from kiok.core.notify import SmtpConnection
from kiok.errors import InvalidInput, NotFound
from kiok.master.api.deps import client_address, node_of, require, require_anywhere
from kiok.master.auth import Principal
from kiok.master.views import iso
from kiok.security import actions, resources
from kiok.store import commands as c

router = APIRouter(prefix="/api/v1/connections", tags=["connections"])

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}\Z")  # no dots: ${conn.<id>.<key>} splits on the first


class ConnectionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    connectionId: str = Field(max_length=128)
    type: str = Field(default="generic", max_length=64)
    description: str = Field(default="", max_length=4096)
    properties: dict[str, str] = Field(default_factory=dict, max_length=256)


def _view(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "connectionId": record["id"],
        "type": record["type"],
        "description": record["description"],
        "properties": dict.fromkeys(sorted(record["properties"]), "***"),
        "createdAt": iso(record["createdMs"]),
        "updatedAt": iso(record["updatedMs"]),
    }


@router.get("")
async def list_connections(
    request: Request, principal: Principal = Depends(require_anywhere(actions.READ_CONNECTION))
) -> dict[str, Any]:
    """The connections the caller may read (``connections:Read`` on ``connection/<id>``)."""
    node = node_of(request)
    may_read = node.iam.grants(principal).checker(actions.READ_CONNECTION)
    return {
        "connections": [
            _view(r) for r in node.reader.connections() if may_read(resources.connection(r["id"]))
        ]
    }


@router.post("", status_code=201, responses={400: {}})
async def put_connection(
    body: ConnectionRequest,
    request: Request,
    principal: Principal = Depends(require_anywhere(actions.WRITE_CONNECTION)),
) -> dict[str, Any]:
    """Create or replace a connection (``connections:Write`` on ``connection/<its id>``)."""
    if not _ID.match(body.connectionId):
        raise InvalidInput("connectionId: letters, digits, '_' and '-' only (no dots), up to 128")
    node = node_of(request)
    node.iam.authorize(principal, actions.WRITE_CONNECTION, resources.connection(body.connectionId))
    for key in body.properties:
        if not key or len(key) > 256 or "}" in key or any(ch.isspace() for ch in key):
            raise InvalidInput(f"properties: invalid property name {key!r}")
    if body.type == "smtp":  # used by email notifications: refuse one they could never use
        try:
            SmtpConnection.from_properties(body.properties)
        except ValueError as e:
            raise InvalidInput(f"properties: {e}") from None
    await node.log.propose(
        c.PutConnection(
            at_ms=node.clock_ms(),
            connection_id=body.connectionId,
            type=body.type,
            description=body.description,
            properties=body.properties,
        )
    )
    node.audit.record(principal.user, actions.WRITE_CONNECTION, body.connectionId, client_address(request))
    record = node.reader.connection(body.connectionId)
    assert record is not None
    return _view(record)


@router.get("/{connection_id}", responses={404: {}})
async def get_connection(
    connection_id: str,
    request: Request,
    _: Principal = Depends(require(actions.READ_CONNECTION, "connection/{connection_id}")),
) -> dict[str, Any]:
    record = node_of(request).reader.connection(connection_id)
    if record is None:
        raise NotFound(f"connection {connection_id!r} not found")
    return _view(record)


@router.delete("/{connection_id}", responses={404: {}})
async def delete_connection(
    connection_id: str,
    request: Request,
    principal: Principal = Depends(require(actions.DELETE_CONNECTION, "connection/{connection_id}")),
) -> dict[str, Any]:
    node = node_of(request)
    result: dict[str, Any] = await node.log.propose(
        c.DeleteConnection(at_ms=node.clock_ms(), connection_id=connection_id)
    )
    node.audit.record(principal.user, actions.DELETE_CONNECTION, connection_id, client_address(request))
    return result
