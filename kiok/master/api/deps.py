"""Request plumbing shared by the routers: the node, the principal, the action check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kiok.errors import Unauthenticated
from kiok.master.api.forward import FORWARDED_FOR, SERVICE_AUTH
from kiok.master.auth import Principal
from kiok.security import actions

if TYPE_CHECKING:
    from kiok.master.node import MasterNode

#: Declared for the OpenAPI document; the header itself is read by ``AuthService``
#: (which also accepts ``Token <jwt>``).
_bearer = HTTPBearer(auto_error=False, description="JWT from POST /api/v1/auth/login")


def node_of(request: Request) -> MasterNode:
    node: MasterNode = request.app.state.node
    return node


def authorization(request: Request) -> str | None:
    """The request's one ``Authorization`` header. Two are refused: a proxy in front could
    check or log the other one than kiok takes."""
    values = request.headers.getlist("authorization")
    if len(values) > 1:
        raise Unauthenticated("more than one Authorization header; send exactly one")
    return values[0] if values else None


def client_address(request: Request) -> str:
    """The caller's address; for a request a follower forwarded, the address the follower
    saw (believed only with a valid service token)."""
    forwarded = request.headers.get(FORWARDED_FOR)
    if forwarded:
        scheme, _, token = request.headers.get(SERVICE_AUTH, "").partition(" ")
        if scheme.lower() == "bearer" and node_of(request).accepts_service_token(token.strip()):
            return forwarded
    return request.client.host if request.client else "unknown"


#: Actions every authenticated principal may take (on itself / harmless).
_ALWAYS = {actions.CHANGE_PASSWORD, actions.READ_API_SCHEMA}


def require(
    action: str, resource: str | Callable[[Request], str] = "*"
) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the caller and checks ``action`` on ``resource``
    (a template filled from the path parameters, e.g. ``dag/{dag_id}``, or a function of the
    request for a resource the path alone does not name, e.g. a run's DAG)."""

    async def dependency(
        request: Request, _: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> Principal:
        node = node_of(request)
        principal = node.auth.authenticate(
            authorization(request), allow_password_change=action == actions.CHANGE_PASSWORD
        )
        if action not in _ALWAYS:
            name = resource(request) if callable(resource) else resource.format(**request.path_params)
            node.iam.authorize(principal, action, name)
        return principal

    return dependency


async def signed_in(request: Request, _: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
    """A dependency that only authenticates: for routes whose every resource is checked by
    the route itself and that users may call on themselves without a policy
    (``actions.SELF_SERVICE``)."""
    return node_of(request).auth.authenticate(authorization(request))


def require_anywhere(action: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the caller and checks that ``action`` could be
    allowed on some resource. For a list the route then filters item by item, or a resource
    named in the body that the route then checks itself (``node.iam.grants``)."""

    async def dependency(
        request: Request, _: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> Principal:
        node = node_of(request)
        principal = node.auth.authenticate(authorization(request))
        node.iam.grants(principal).check_anywhere(action)
        return principal

    return dependency
