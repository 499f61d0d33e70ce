"""The admin HTTP application: routers, error mapping, security headers, body-size and JSON
limits, readiness gate."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kiok import ui
from kiok.master import http_errors
from kiok.master.api import (
    admin,
    auth,
    backups,
    cluster,
    connections,
    dags,
    dashboard,
    grid,
    health,
    iam,
    maintenance,
    me,
    openapi,
    raft_snapshots,
    runs,
)
from kiok.master.api.forward import ForwardToLeader
from kiok.master.api.json_limits import JsonLimits
from kiok.master.api.observe import RequestObserver
from kiok.master.http_errors import error_response
from kiok.security.http_headers import SecurityHeaders

if TYPE_CHECKING:
    from kiok.master.node import MasterNode

#: Reachable before the cluster opens: a client must be able to log in, renew its token and
#: change the first-login password (a new cluster's admin/admin may do nothing else), and,
#: with workers over the network, create the join token that admits the first worker.
#: Admitting and revoking workers must work while no worker is connected, too.
_UNGATED = (
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/auth/change-password",
    "/api/v1/admin/join-tokens",
)
#: Backups and restore work before the cluster opens: disaster recovery restores into fresh
#: masters that no worker can join yet (the workers' credentials are in the backup).
_UNGATED_PREFIXES = ("/api/v1/admin/workers", "/api/v1/admin/backup")


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, whether or not they declare a
    Content-Length, without reading more than the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            "payload_too_large",
            f"request body over kiok.admin.http.max.content.size.bytes ({self.max_bytes} bytes)",
        )
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


class ReadinessGate:
    """503 for ``/api/v1`` until the cluster is ready (every master, at least one worker)."""

    def __init__(self, app: ASGIApp, node: MasterNode) -> None:
        self.app = app
        self.node = node

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] == "http"
            and path.startswith("/api/v1/")
            and path not in _UNGATED
            and not path.startswith(_UNGATED_PREFIXES)
        ):
            ready, why = self.node.readiness()
            if not ready:
                response = error_response(503, "not_ready", f"cluster not ready: {why}", {"Retry-After": "1"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(node: MasterNode, *, max_body_bytes: int, forward_timeout_s: float = 30.0) -> FastAPI:
    app = FastAPI(
        title="kiok admin API",
        version="1",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.node = node
    http_errors.install(app)
    routers = (
        health,
        auth,
        me,
        dags,
        grid,
        runs,
        dashboard,
        cluster,
        admin,
        backups,
        maintenance,
        connections,
        iam,
        raft_snapshots,
    )
    for module in routers:
        app.include_router(module.router)
    openapi.install(app)
    ui.install(app)  # last: the SPA shell answers GETs no other route took
    app.add_middleware(ReadinessGate, node=node)
    app.add_middleware(ForwardToLeader, node=node, timeout_s=forward_timeout_s)
    app.add_middleware(JsonLimits)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(SecurityHeaders, no_store_prefixes=("/api/",))  # every answer
    app.add_middleware(RequestObserver, node=node)  # outermost: request id, latency
    if node is not None:  # None: only the route table is wanted (tests, OpenAPI export)
        node.tracing.instrument(app)  # traces (kiok.otel.enabled): the server span wraps them all
    return app
