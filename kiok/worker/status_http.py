"""The worker's status port (19998): ``/health``, ``/ready``, ``/status``, ``POST /drain``
(undone by ``POST /undrain`` or ``DELETE /drain``), ``/cluster/health``. Plain Starlette: a
few routes need no OpenAPI document.

The probes and ``/status`` are open. Draining, the one thing that changes the worker, takes
the worker's status token (``Authorization: Bearer``, see ``kiok.worker.status_token``):
tasks share the host's network and reach this port, and without it a DAG's task could stop
its worker (every user's runs, on a standalone) or undo an operator's drain. A wrong or
missing token gets 401. It also refuses what a browser sends on behalf of another site: a
request whose ``Origin`` is not this port's own, or marked ``Sec-Fetch-Site``
``cross-site`` or ``same-site``, gets 403; and so does one with an ``Origin`` that names
the port by anything but an address or ``localhost`` (DNS rebinding: a site whose name
now resolves to 127.0.0.1 is this port's "own" origin to the browser). Scripts (curl,
kubectl) send no ``Origin`` and are unaffected by that check."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kiok.errors import NotFound
from kiok.security.http_headers import SecurityHeaders
from kiok.worker.status_token import bearer_refusal
from kiok.worker.worker import Worker


def cross_site(request: Request) -> str | None:
    """Why ``request`` looks sent by a browser for another site, or None."""
    origin = request.headers.get("origin")
    if origin is not None:
        host = request.headers.get("host", "")
        own = f"{request.url.scheme}://{host}".lower()
        if origin.lower() != own:
            return f"cross-origin request refused (Origin {origin!r} is not {own!r})"
        if not _is_address(host):
            return f"a browser's request must name this port by address, not {host!r} (DNS rebinding)"
    if request.headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site"):
        return "cross-site request refused (Sec-Fetch-Site)"
    return None


def _is_address(host: str) -> bool:
    """Whether a ``Host`` header names an IP address or ``localhost`` (with or without a port)."""
    if host.startswith("["):  # [::1]:19998
        name = host[1 : host.find("]")] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0]
    if name.lower() == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _refused(why: str) -> JSONResponse:
    return JSONResponse({"error": {"code": "forbidden", "message": why}}, status_code=403)


def _unauthenticated(why: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": "unauthenticated", "message": why}},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


async def _routing_error(_: Request, exc: Exception) -> JSONResponse:
    """An unknown path or method, in the error shape of every kiok port (the admin API's
    ``{"error": {"code", "message"}}``), not Starlette's plain text."""
    assert isinstance(exc, HTTPException)
    code = {404: NotFound.code, 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
    return JSONResponse({"error": {"code": code, "message": message}}, exc.status_code, headers=exc.headers)


def drain_refusal(request: Request, token: str) -> JSONResponse | None:
    """The answer refusing a drain or undrain ``request`` (cross-site: 403; without ``token``:
    401), or None when it may go ahead."""
    if why := cross_site(request):
        return _refused(why)
    if why := bearer_refusal(request.headers.get("authorization"), token):
        return _unauthenticated(why)
    return None


def create_status_app(
    worker: Worker,
    master_connection: Callable[[], str],
    on_undrain: Callable[[], None] = lambda: None,
    *,
    drain_token: str,
) -> Starlette:
    """The status app of ``worker``; ``on_undrain`` tells the master (in one process) that the
    worker takes runs again (a remote worker's next heartbeat says so). Drain and undrain
    take ``drain_token`` (the worker's status token)."""

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> JSONResponse:
        state = master_connection()
        if state == "connected":
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "masterConnection": state}, status_code=503)

    async def status(_: Request) -> JSONResponse:
        return JSONResponse(worker.status(master_connection()))

    async def drain(request: Request) -> JSONResponse:
        if refusal := drain_refusal(request, drain_token):
            return refusal
        worker.start_drain()
        return JSONResponse({"draining": True, "activeRuns": len(worker.active_runs)})

    async def undrain(request: Request) -> JSONResponse:
        if refusal := drain_refusal(request, drain_token):
            return refusal
        if not worker.stop_drain():
            return JSONResponse(
                {"error": {"code": "conflict", "message": "the worker is shutting down; it stays drained"}},
                status_code=409,
            )
        on_undrain()
        return JSONResponse({"draining": False, "activeRuns": len(worker.active_runs)})

    async def drain_or_undo(request: Request) -> JSONResponse:
        return await (undrain if request.method == "DELETE" else drain)(request)

    async def cluster_health(_: Request) -> JSONResponse:
        state = master_connection()
        return JSONResponse(
            {"status": "healthy" if state == "connected" else "unhealthy", "masterConnection": state}
        )

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/ready", ready),
            Route("/status", status),
            # One route for both methods: two would answer a third method with the first's
            # ``Allow`` alone.
            Route("/drain", drain_or_undo, methods=["POST", "DELETE"]),
            Route("/undrain", undrain, methods=["POST"]),
            Route("/cluster/health", cluster_health),
        ],
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={HTTPException: _routing_error},
    )
    # ``/drain/`` is a 404 like any unknown path: a 307 to the path without the slash would
    # come before the token check, its Location built from the Host header.
    app.router.redirect_slashes = False
    return app
