"""``/api/v1/iam``: users, groups and AWS-style policies. Passwords go in, never come out."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from kiok.errors import InvalidInput, NotFound
from kiok.master.api.deps import client_address, node_of, require
from kiok.master.auth import Principal
from kiok.master.views import iso
from kiok.security import actions
from kiok.security.passwords import hash_password, password_problem
from kiok.security.policy import validate_document
from kiok.store import commands as c

router = APIRouter(prefix="/api/v1/iam", tags=["iam"])

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


def _name(value: str, field: str) -> str:
    if not _NAME.match(value):
        raise InvalidInput(f"{field}: letters, digits, '_', '.', '@', '-' (up to 128)")
    return value


class UserRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(max_length=128)
    password: str | None = Field(default=None, max_length=4096)
    groups: list[str] = Field(default_factory=list, max_length=100)
    policies: list[str] = Field(default_factory=list, max_length=100)


class GroupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group: str = Field(max_length=128)
    policies: list[str] = Field(default_factory=list, max_length=100)


class PolicyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: str = Field(max_length=128)
    document: dict[str, Any]


def _user_view(u: dict[str, Any]) -> dict[str, Any]:
    return {
        "user": u["name"],
        "groups": u.get("groups", []),
        "policies": u.get("policies", []),
        "requirePasswordChange": bool(u.get("requirePasswordChange")),
        "createdAt": iso(u.get("createdMs")),
    }


@router.get("/users")
async def list_users(
    request: Request, _: Principal = Depends(require(actions.READ_IAM, "iam/*"))
) -> dict[str, Any]:
    return {"users": [_user_view(u) for u in node_of(request).reader.iam_records("user")]}


@router.post("/users", status_code=201, responses={400: {}})
async def put_user(
    body: UserRequest, request: Request, principal: Principal = Depends(require(actions.WRITE_IAM, "iam/*"))
) -> dict[str, Any]:
    """Create a user (password required) or update its groups and policies."""
    node = node_of(request)
    name = _name(body.user, "user")
    password_hash = ""
    if body.password is not None:
        problem = password_problem(body.password, user=name)
        if problem:
            raise InvalidInput(f"password: {problem}")
        password_hash = hash_password(body.password)
    await node.log.propose(
        c.PutUser(
            at_ms=node.clock_ms(),
            name=name,
            password_hash=password_hash,
            groups=tuple(body.groups),
            policies=tuple(body.policies),
        )
    )
    node.audit.record(principal.user, actions.WRITE_IAM, f"user/{name}", client_address(request))
    record = node.reader.user(name)
    assert record is not None
    return _user_view(record)


@router.get("/groups")
async def list_groups(
    request: Request, _: Principal = Depends(require(actions.READ_IAM, "iam/*"))
) -> dict[str, Any]:
    groups = node_of(request).reader.iam_records("group")
    return {"groups": [{"group": g["name"], "policies": g["policies"]} for g in groups]}


@router.post("/groups", status_code=201, responses={400: {}})
async def put_group(
    body: GroupRequest, request: Request, principal: Principal = Depends(require(actions.WRITE_IAM, "iam/*"))
) -> dict[str, Any]:
    node = node_of(request)
    name = _name(body.group, "group")
    await node.log.propose(c.PutGroup(at_ms=node.clock_ms(), name=name, policies=tuple(body.policies)))
    node.audit.record(principal.user, actions.WRITE_IAM, f"group/{name}", client_address(request))
    return {"group": name, "policies": body.policies}


@router.get("/policies")
async def list_policies(
    request: Request, _: Principal = Depends(require(actions.READ_IAM, "iam/*"))
) -> dict[str, Any]:
    policies = node_of(request).reader.iam_records("policy")
    return {"policies": [{"policy": p["name"], "document": p["document"]} for p in policies]}


@router.post("/policies", status_code=201, responses={400: {}})
async def put_policy(
    body: PolicyRequest, request: Request, principal: Principal = Depends(require(actions.WRITE_IAM, "iam/*"))
) -> dict[str, Any]:
    node = node_of(request)
    name = _name(body.policy, "policy")
    document = validate_document(body.document)
    await node.log.propose(c.PutPolicy(at_ms=node.clock_ms(), name=name, document=document))
    node.audit.record(principal.user, actions.WRITE_IAM, f"policy/{name}", client_address(request))
    return {"policy": name, "document": document}


class AccessKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, max_length=128, description="Default: the caller.")


@router.post("/access-keys", status_code=201, responses={404: {}})
async def create_access_key(
    request: Request,
    body: AccessKeyRequest | None = None,
    principal: Principal = Depends(require(actions.WRITE_IAM, "iam/*")),
) -> dict[str, Any]:
    """A new access key; the secret is in this answer only. Use ``Authorization: AccessKey <id>:<secret>``."""
    node = node_of(request)
    user = (body.user if body and body.user else None) or principal.user
    if node.reader.user(user) is None:
        raise NotFound(f"user {user!r} not found")
    key_id, secret = await node.auth.create_access_key(user)
    node.audit.record(
        principal.user, actions.WRITE_IAM, f"accesskey/{key_id} for {user}", client_address(request)
    )
    return {"accessKeyId": key_id, "secretAccessKey": secret, "user": user}


@router.get("/access-keys")
async def list_access_keys(
    request: Request, _: Principal = Depends(require(actions.READ_IAM, "iam/*"))
) -> dict[str, Any]:
    keys = node_of(request).reader.iam_records("accesskey")
    return {
        "accessKeys": [
            {"accessKeyId": a["keyId"], "user": a["user"], "createdAt": iso(a["createdMs"])} for a in keys
        ]
    }


@router.delete("/{what}/{name}", responses={404: {}})
async def delete_iam(
    what: str,
    name: str,
    request: Request,
    principal: Principal = Depends(require(actions.WRITE_IAM, "iam/*")),
) -> dict[str, Any]:
    """Delete a user, group or policy: ``/users/NAME``, ``/groups/NAME``, ``/policies/NAME``."""
    kinds = {"users": "user", "groups": "group", "policies": "policy", "access-keys": "accesskey"}
    if what not in kinds:
        raise NotFound("no such endpoint")
    node = node_of(request)
    result: dict[str, Any] = await node.log.propose(
        c.DeleteIam(at_ms=node.clock_ms(), what=kinds[what], name=name)
    )
    node.audit.record(
        principal.user, actions.WRITE_IAM, f"{kinds[what]}/{name} deleted", client_address(request)
    )
    return result
