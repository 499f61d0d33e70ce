"""The admin HTTP application: routers, error mapping, security headers, body-size and JSON
limits, readiness gate."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kiok import ui
from kiok.errors import KiokError, Unauthenticated
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
from kiok.master.api.health import ShutdownNotice
from kiok.master.api.json_limits import JsonLimits
from kiok.master.api.observe import RequestObserver
from kiok.master.http_errors import error_response, status_for
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


#: The largest body a request without valid credentials may send (a login is a few hundred
#: bytes): the full ``kiok.admin.http.max.content.size.bytes`` is for authenticated callers, so
#: anyone who can reach the port cannot have megabytes read and parsed (``JsonLimits``).
ANONYMOUS_MAX_BODY_BYTES = 64 * 1024


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, whether or not they declare a
    Content-Length, without reading more than the limit. Past ``anonymous_max_bytes`` the
    request's ``Authorization`` must authenticate (checked once, only for such a body): a
    request without valid credentials is refused there with 413, before more is read."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        node: MasterNode | None = None,
        anonymous_max_bytes: int = ANONYMOUS_MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.node = node
        self.anonymous_max_bytes = min(anonymous_max_bytes, max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit():
                size = int(value)
                if size > self.max_bytes:
                    await self._refuse(scope, receive, send, self.max_bytes)
                    return
                if size > self.anonymous_max_bytes:
                    refused = self._credentials(scope)
                    if refused is not None:
                        await self._refuse(scope, receive, send, self.anonymous_max_bytes, refused)
                        return
        seen = 0
        limit = self.anonymous_max_bytes

        async def limited() -> Message:
            nonlocal seen, limit
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    if limit == self.max_bytes:
                        raise _TooLarge(limit)
                    refused = self._credentials(scope)
                    if refused is not None:
                        raise _TooLarge(limit, refused)
                    limit = self.max_bytes
                    if seen > limit:
                        raise _TooLarge(limit)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge as err:
            await self._refuse(scope, receive, send, err.limit, err.refused)

    def _credentials(self, scope: Scope) -> KiokError | None:
        """None when the request's one ``Authorization`` header authenticates (a token that
        may only change its password counts: the endpoint decides what it may do); else why
        not: ``_NO_CREDENTIALS``, or the authentication's own error (an expired token)."""
        if self.node is None:
            return None
        headers = [v for n, v in scope.get("headers", ()) if n == b"authorization"]
        if len(headers) != 1:
            return _NO_CREDENTIALS
        try:
            self.node.auth.authenticate(headers[0].decode("latin-1"), allow_password_change=True)
        except KiokError as e:
            return e
        return None

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, limit: int, refused: KiokError | None = None
    ) -> None:
        if refused is not None and refused is not _NO_CREDENTIALS:
            # Credentials sent and refused (most often an expired token): answered as the
            # endpoint would, so that a client refreshes its token and sends the body again.
            headers = {"WWW-Authenticate": "Bearer"} if isinstance(refused, Unauthenticated) else None
            response = error_response(status_for(refused), refused.code, refused.message, headers)
            await response(scope, receive, send)
            return
        if limit < self.max_bytes:
            message = (
                f"request body over {limit} bytes without valid credentials: send "
                "'Authorization: Bearer <token>' for a body up to "
                f"kiok.admin.http.max.content.size.bytes ({self.max_bytes} bytes)"
            )
        else:
            message = f"request body over kiok.admin.http.max.content.size.bytes ({self.max_bytes} bytes)"
        await error_response(413, "payload_too_large", message)(scope, receive, send)


class _TooLarge(Exception):
    def __init__(self, limit: int, refused: KiokError | None = None) -> None:
        super().__init__(limit)
        self.limit = limit
        self.refused = refused


#: No ``Authorization`` header (or more than one): the anonymous limit applies, a 413.
_NO_CREDENTIALS = Unauthenticated("no credentials")


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
            ready, why = self.node.api_gate()
            if not ready:
                response = error_response(503, "not_ready", f"cluster not ready: {why}", {"Retry-After": "1"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    node: MasterNode,
    *,
    max_body_bytes: int,
    forward_timeout_s: float = 30.0,
    shutdown: ShutdownNotice | None = None,
) -> FastAPI:
    """The admin app over ``node``; ``shutdown`` is how the process's root turns ``/readyz``
    to 503 when it begins to shut down."""
    app = FastAPI(
        title="kiok admin API",
        version="1",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # ``/api/v1/dags/`` is a 404 like any unknown path: a 307 to the path without the
        # slash would come before authentication, its Location built from the Host header.
        redirect_slashes=False,
    )
    app.state.node = node
    app.state.shutdown = shutdown or ShutdownNotice()
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
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, node=node)
    app.add_middleware(SecurityHeaders, no_store_prefixes=("/api/",))  # every answer
    app.add_middleware(RequestObserver, node=node)  # outermost: request id, latency
    if node is not None:  # None: only the route table is wanted (tests, OpenAPI export)
        node.tracing.instrument(app)  # traces (kiok.otel.enabled): the server span wraps them all
    return app
