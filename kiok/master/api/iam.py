"""``/api/v1/iam``: users, groups, AWS-style policies and access keys. Passwords and secrets
go in, never come out.

Every check names the record it touches (``kiok.security.resources``): writing a user is
``iam:Write`` on ``iam/user/<name>``; putting it in or out of a group, or attaching or
detaching a policy, is also an action on that group or policy; setting an existing user's
password is ``iam:SetPassword``. Lists show only what the caller may read. Users manage their
own access keys without a policy (``actions.SELF_SERVICE``); creating one needs their password."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import chain
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from kiok.errors import Conflict, InvalidInput, NotFound
from kiok.ids import USER_NAME
from kiok.master.api.deps import client_address, node_of, require, require_anywhere, signed_in
from kiok.master.auth import SERVICE_PRINCIPAL, Principal
from kiok.master.iam import Grants
from kiok.master.views import iso
from kiok.security import actions, resources
from kiok.security.passwords import MAX_PASSWORD_LENGTH, password_problem
from kiok.security.policy import is_attached, validate_document, write_reaches_holders
from kiok.store import commands as c
from kiok.store.reader import access_key_is_current

if TYPE_CHECKING:
    from kiok.master.node import MasterNode

router = APIRouter(prefix="/api/v1/iam", tags=["iam"])


def _name(value: str, field: str) -> str:
    if not USER_NAME.match(value):
        raise InvalidInput(f"{field}: letters, digits, '_', '.', '@', '-' (up to 128)")
    return value


class UserRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user: str = Field(max_length=128)
    password: str | None = Field(default=None, max_length=MAX_PASSWORD_LENGTH)
    groups: list[str] | None = Field(default=None, max_length=100, description="Omitted: unchanged.")
    policies: list[str] | None = Field(default=None, max_length=100, description="Omitted: unchanged.")
    requirePasswordChange: bool | None = Field(
        default=None,
        description="The user must choose a new password at its next login (an admin's reset). "
        "Omitted: unchanged (a new user: false).",
    )


class GroupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    group: str = Field(max_length=128)
    policies: list[str] | None = Field(default=None, max_length=100, description="Omitted: unchanged.")


class PolicyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    policy: str = Field(max_length=128)
    document: dict[str, Any]


class AccessKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user: str | None = Field(default=None, max_length=128, description="Default: the caller.")
    password: str | None = Field(
        default=None,
        max_length=MAX_PASSWORD_LENGTH,
        description="The caller's current password: required for a key of one's own, ignored "
        "for another user's (that needs iam:CreateAccessKey on the user from a policy).",
    )


def _user_view(u: dict[str, Any]) -> dict[str, Any]:
    return {
        "user": u["name"],
        "groups": u.get("groups", []),
        "policies": u.get("policies", []),
        "requirePasswordChange": bool(u.get("requirePasswordChange")),
        "createdAt": iso(u.get("createdMs")),
    }


def _changed(field: str, before: Iterable[str], after: Iterable[str]) -> str:
    """``groups +a -b`` for the audit log ("" when nothing changed)."""
    old, new = set(before), set(after)
    names = [f"+{n}" for n in sorted(new - old)] + [f"-{n}" for n in sorted(old - new)]
    return f"{field} {' '.join(names)}" if names else ""


def _check_changes(
    grants: Grants,
    before: Iterable[str],
    after: Iterable[str],
    add: str,
    remove: str,
    resource: Callable[[str], str],
) -> None:
    """Adding a name needs ``add`` on its resource, removing one needs ``remove``."""
    old, new = set(before), set(after)
    for name in sorted(new - old):
        grants.check(add, resource(name))
    for name in sorted(old - new):
        grants.check(remove, resource(name))


@router.get("/users")
async def list_users(
    request: Request, principal: Principal = Depends(require_anywhere(actions.READ_IAM))
) -> dict[str, Any]:
    node = node_of(request)
    grants = node.iam.grants(principal)
    users = node.reader.iam_records("user")
    return {
        "users": [_user_view(u) for u in users if grants.allows(actions.READ_IAM, resources.user(u["name"]))]
    }


@router.post("/users", status_code=201, responses={400: {}, 409: {}})
async def put_user(
    body: UserRequest,
    request: Request,
    principal: Principal = Depends(require_anywhere(actions.WRITE_IAM)),
    if_none_match: str | None = Header(
        default=None, description="`*`: create only; a user of that name already there is refused with 409."
    ),
) -> dict[str, Any]:
    """Create a user (password required) or update it: its password, groups and policies
    (an omitted field is unchanged). With ``If-None-Match: *`` create only (the UI's "Create
    user": an existing user's password and policies are not silently replaced)."""
    node = node_of(request)
    name = _name(body.user, "user")
    if name == SERVICE_PRINCIPAL:
        # Service tokens act as this name: a user of it would be logged as them, and would
        # lose its own policies (the service principal has none).
        raise InvalidInput(f"user: {SERVICE_PRINCIPAL!r} is reserved for service tokens")
    grants = node.iam.grants(principal)
    grants.check(actions.WRITE_IAM, resources.user(name))
    old = node.reader.user(name)
    if old is not None and _create_only(if_none_match):  # committed only if still absent
        raise Conflict(f"user {name!r} already exists (If-None-Match: * creates only)")
    old_groups = list((old or {}).get("groups") or [])
    old_policies = list((old or {}).get("policies") or [])
    groups = old_groups if body.groups is None else body.groups
    policies = old_policies if body.policies is None else body.policies
    if old is not None and (body.password is not None or body.requirePasswordChange is not None):
        grants.check(actions.SET_PASSWORD, resources.user(name))
    _check_changes(
        grants, old_groups, groups, actions.ADD_USER_TO_GROUP, actions.REMOVE_USER_FROM_GROUP, resources.group
    )
    _check_changes(
        grants, old_policies, policies, actions.ATTACH_POLICY, actions.DETACH_POLICY, resources.policy
    )
    password_hash = ""
    if body.password is not None:
        problem = password_problem(body.password, user=name)
        if problem:
            raise InvalidInput(f"password: {problem}")
        password_hash = await node.auth.hashes.hash(body.password)
    await node.log.propose(
        c.PutUser(
            at_ms=node.clock_ms(),
            name=name,
            password_hash=password_hash,
            groups=tuple(dict.fromkeys(groups)),
            policies=tuple(dict.fromkeys(policies)),
            expect_existing=old is not None,
            expect_groups=tuple(old_groups),
            expect_policies=tuple(old_policies),
            require_password_change=body.requirePasswordChange,
        )
    )
    changes = ["created" if old is None else ("password set" if body.password is not None else "")]
    if body.requirePasswordChange is not None:
        changes.append(f"requirePasswordChange={str(body.requirePasswordChange).lower()}")
    changes += [_changed("groups", old_groups, groups), _changed("policies", old_policies, policies)]
    node.audit.record(
        principal.user,
        actions.WRITE_IAM,
        resources.user(name),
        client_address(request),
        detail="; ".join(x for x in changes if x),
    )
    record = node.reader.user(name)
    assert record is not None
    return _user_view(record)


@router.get("/groups")
async def list_groups(
    request: Request, principal: Principal = Depends(require_anywhere(actions.READ_IAM))
) -> dict[str, Any]:
    node = node_of(request)
    grants = node.iam.grants(principal)
    return {
        "groups": [
            {"group": g["name"], "policies": g["policies"]}
            for g in node.reader.iam_records("group")
            if grants.allows(actions.READ_IAM, resources.group(g["name"]))
        ]
    }


@router.post("/groups", status_code=201, responses={400: {}, 409: {}})
async def put_group(
    body: GroupRequest,
    request: Request,
    principal: Principal = Depends(require_anywhere(actions.WRITE_IAM)),
    if_none_match: str | None = Header(
        default=None, description="`*`: create only; a group of that name already there is refused with 409."
    ),
) -> dict[str, Any]:
    """Create a group or set its policies (omitted: unchanged); with ``If-None-Match: *``
    create only (the UI's "Create group")."""
    node = node_of(request)
    name = _name(body.group, "group")
    grants = node.iam.grants(principal)
    grants.check(actions.WRITE_IAM, resources.group(name))
    create_only = _create_only(if_none_match)
    if create_only and node.reader.group(name) is not None:
        raise Conflict(f"group {name!r} already exists (If-None-Match: * creates only)")
    old_policies = list((node.reader.group(name) or {}).get("policies") or [])
    policies = old_policies if body.policies is None else list(dict.fromkeys(body.policies))
    _check_changes(
        grants, old_policies, policies, actions.ATTACH_POLICY, actions.DETACH_POLICY, resources.policy
    )
    await node.log.propose(
        c.PutGroup(
            at_ms=node.clock_ms(),
            name=name,
            policies=tuple(policies),
            expect_policies=tuple(old_policies),
            create_only=create_only,
        )
    )
    node.audit.record(
        principal.user,
        actions.WRITE_IAM,
        resources.group(name),
        client_address(request),
        detail=_changed("policies", old_policies, policies),
    )
    return {"group": name, "policies": policies}


@router.get("/policies")
async def list_policies(
    request: Request, principal: Principal = Depends(require_anywhere(actions.READ_IAM))
) -> dict[str, Any]:
    node = node_of(request)
    grants = node.iam.grants(principal)
    return {
        "policies": [
            {"policy": p["name"], "document": p["document"]}
            for p in node.reader.iam_records("policy")
            if grants.allows(actions.READ_IAM, resources.policy(p["name"]))
        ]
    }


@router.post("/policies", status_code=201, responses={400: {}, 409: {}})
async def put_policy(
    body: PolicyRequest,
    request: Request,
    principal: Principal = Depends(require_anywhere(actions.WRITE_IAM)),
    if_none_match: str | None = Header(
        default=None,
        description="`*`: create only; a policy of that name already there is refused with 409.",
    ),
) -> dict[str, Any]:
    """Create a policy or replace its document; with ``If-None-Match: *`` create only (the UI's
    "New policy", so a name already taken is not silently replaced). Replacing the document of
    a policy that is attached to a user or group changes what they may do, as detaching the old one and
    attaching the new one would: it also needs ``iam:AttachPolicy`` and ``iam:DetachPolicy``
    on the policy (else ``iam:Write`` on a policy one holds would grant oneself anything, or
    empty a Deny one is held to)."""
    node = node_of(request)
    name = _name(body.policy, "policy")
    grants = node.iam.grants(principal)
    grants.check(actions.WRITE_IAM, resources.policy(name))
    document = validate_document(body.document)
    old = node.reader.policy(name)
    create_only = _create_only(if_none_match)
    if create_only and old is not None:  # before the attach checks: this is the answer
        raise Conflict(f"policy {name!r} already exists (If-None-Match: * creates only)")
    checked = write_reaches_holders(old["document"] if old else None, document, _attached(node, name))
    if checked:
        grants.check(actions.ATTACH_POLICY, resources.policy(name))
        grants.check(actions.DETACH_POLICY, resources.policy(name))
    await node.log.propose(
        c.PutPolicy(
            at_ms=node.clock_ms(),
            name=name,
            document=document,
            unchecked_attach=not checked,
            create_only=create_only,
        )
    )
    node.audit.record(
        principal.user,
        actions.WRITE_IAM,
        resources.policy(name),
        client_address(request),
        detail="created" if old is None else "document replaced",
    )
    return {"policy": name, "document": document}


@router.post(
    "/access-keys",
    status_code=201,
    responses={
        400: {"description": "a key of one's own without the caller's password"},
        403: {"description": "not allowed, or a wrong password"},
        404: {},
        409: {"description": "the user holds kiok.iam.access.keys.max.per.user keys"},
        429: {"description": "too many failed password checks"},
    },
)
async def create_access_key(
    request: Request, body: AccessKeyRequest | None = None, principal: Principal = Depends(signed_in)
) -> dict[str, Any]:
    """A new access key (for ``user``, default the caller); the secret is in this answer only.
    Use ``Authorization: AccessKey <id>:<secret>``.

    A key of one's own needs the current password in ``password`` (re-authentication, as
    GitHub's sudo mode): a key outlives the session, and the password change that ends a
    stolen token's session, so a stolen token must not be able to mint one. Checked and
    rate-limited as a login. Another user's key needs no password: its
    ``iam:CreateAccessKey`` comes from a policy, which self-service never grants."""
    node = node_of(request)
    user = (body.user if body and body.user else None) or principal.user
    node.iam.authorize(principal, actions.CREATE_ACCESS_KEY, resources.user(user))
    if node.reader.user(user) is None:
        raise NotFound(f"user {user!r} not found")
    if user == principal.user:
        if body is None or body.password is None:
            raise InvalidInput(
                "password: your current password is required to create an access key for yourself"
            )
        await node.auth.confirm_password(
            user, body.password, client_address(request), actions.CREATE_ACCESS_KEY
        )
    key_id, secret = await node.auth.create_access_key(
        user, max_keys=node.settings.get_int("kiok.iam.access.keys.max.per.user")
    )
    node.audit.record(
        principal.user,
        actions.CREATE_ACCESS_KEY,
        f"{resources.user(user)} key {key_id}",
        client_address(request),
    )
    return {"accessKeyId": key_id, "secretAccessKey": secret, "user": user}


@router.get("/access-keys", responses={404: {}})
async def list_access_keys(
    request: Request,
    user: str | None = Query(
        default=None, max_length=128, description="Default: every user's the caller may list."
    ),
    principal: Principal = Depends(signed_in),
) -> dict[str, Any]:
    """Access keys (ids, users, creation times; never secrets), of one user or of every user
    whose keys the caller may list (a user's own always, unless denied)."""
    node = node_of(request)
    grants = node.iam.grants(principal)
    if user is not None:
        grants.check(actions.LIST_ACCESS_KEYS, resources.user(user))
        if node.reader.user(user) is None:
            raise NotFound(f"user {user!r} not found")
    return {
        "accessKeys": [
            {"accessKeyId": a["keyId"], "user": a["user"], "createdAt": iso(a["createdMs"])}
            for a in node.reader.access_keys(user)
            if grants.allows(actions.LIST_ACCESS_KEYS, resources.user(a["user"]))
        ]
    }


@router.delete("/access-keys/{key_id}", responses={404: {}})
async def delete_access_key(
    key_id: str, request: Request, principal: Principal = Depends(signed_in)
) -> dict[str, Any]:
    node = node_of(request)
    record = node.reader.access_key(key_id)
    if record is None or not access_key_is_current(record, node.reader.user(record["user"])):
        raise NotFound(f"access key {key_id!r} not found")
    owner = resources.user(record["user"])
    node.iam.authorize(principal, actions.DELETE_ACCESS_KEY, owner)
    result: dict[str, Any] = await node.log.propose(
        c.DeleteIam(at_ms=node.clock_ms(), what="accesskey", name=key_id)
    )
    node.audit.record(
        principal.user, actions.DELETE_ACCESS_KEY, f"{owner} key {key_id} deleted", client_address(request)
    )
    return result


async def _delete(
    request: Request,
    principal: Principal,
    what: str,
    name: str,
    resource: str,
    unchecked_attach: bool = False,
) -> dict[str, Any]:
    """``unchecked_attach``: see ``commands.DeleteIam`` (a policy attached to nobody)."""
    node = node_of(request)
    result: dict[str, Any] = await node.log.propose(
        c.DeleteIam(at_ms=node.clock_ms(), what=what, name=name, unchecked_attach=unchecked_attach)
    )
    node.audit.record(principal.user, actions.WRITE_IAM, f"{resource} deleted", client_address(request))
    return result


@router.delete("/users/{name}", responses={404: {}})
async def delete_user(
    name: str, request: Request, principal: Principal = Depends(require(actions.WRITE_IAM, "iam/user/{name}"))
) -> dict[str, Any]:
    """Delete a user; its access keys go with it."""
    return await _delete(request, principal, "user", name, resources.user(name))


@router.delete("/groups/{name}", responses={404: {}})
async def delete_group(
    name: str,
    request: Request,
    principal: Principal = Depends(require(actions.WRITE_IAM, "iam/group/{name}")),
) -> dict[str, Any]:
    """Delete a group; its members leave it and its policies are detached from it, which
    needs what leaving and detaching need (the group may hold a Deny): also
    ``iam:RemoveUserFromGroup`` on it if it has members, ``iam:DetachPolicy`` on each policy."""
    node = node_of(request)
    group = node.reader.group(name)
    if group is not None:
        grants = node.iam.grants(principal)
        if any(name in (u.get("groups") or ()) for u in node.reader.iam_records("user")):
            grants.check(actions.REMOVE_USER_FROM_GROUP, resources.group(name))
        _check_changes(
            grants, group["policies"], (), actions.ATTACH_POLICY, actions.DETACH_POLICY, resources.policy
        )
    return await _delete(request, principal, "group", name, resources.group(name))


@router.delete("/policies/{name}", responses={404: {}})
async def delete_policy(
    name: str,
    request: Request,
    principal: Principal = Depends(require(actions.WRITE_IAM, "iam/policy/{name}")),
) -> dict[str, Any]:
    """Delete a policy; it is detached from every user and group, which needs what detaching
    needs (it may be a Deny): also ``iam:DetachPolicy`` on it if it is attached anywhere."""
    node = node_of(request)
    policy = node.reader.policy(name)
    checked = write_reaches_holders(policy["document"] if policy else None, None, _attached(node, name))
    if checked:
        node.iam.grants(principal).check(actions.DETACH_POLICY, resources.policy(name))
    return await _delete(request, principal, "policy", name, resources.policy(name), not checked)


def _attached(node: MasterNode, policy: str) -> bool:
    """Whether ``policy`` is attached to some user or group."""
    return is_attached(policy, chain(node.reader.iam_records("user"), node.reader.iam_records("group")))


def _create_only(if_none_match: str | None) -> bool:
    """``If-None-Match: *``: create only, as HTTP means it."""
    return if_none_match is not None and if_none_match.strip() == "*"
