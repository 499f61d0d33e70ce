"""Serving the UI from the admin app: ``/ui/<version>/<file>`` (cached for a year: the
version is a hash of the files) and the app shell for every other non-API GET, so that deep
links (``/runs/<id>``) work. API paths, probes and metrics never reach the shell: an unknown
``/api/...`` path stays a JSON 404. Neither needs auth; the shell carries no data."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from kiok.ui import assets as a

#: Paths the shell never answers (their own routes do, or a JSON 404).
RESERVED = ("/api", "/ui", "/healthz", "/readyz", "/metrics", "/cluster/health")
_IMMUTABLE = "public, max-age=31536000, immutable"
#: The shell, or an asset asked for under another version (a browser holding an older or
#: newer shell, e.g. during a rolling upgrade): served, but never cached.
_REVALIDATE = "no-cache"


def install(app: FastAPI, files: a.Assets | None = None) -> None:
    """Add the UI's routes to ``app``; call after every other route is added."""
    loaded = files if files is not None else a.load()

    async def asset(request: Request) -> Response:
        found = loaded.files.get(request.path_params["path"])
        if found is None or request.path_params["path"] == a.SHELL:
            return Response(
                b'{"error": {"code": "not_found", "message": "no such UI file"}}',
                404,
                media_type="application/json",
            )
        fresh = request.path_params["version"] == loaded.version
        return _send(request, found, _IMMUTABLE if fresh else _REVALIDATE)

    async def shell(request: Request) -> Response:
        return _send(request, loaded.shell, _REVALIDATE)

    app.router.routes.append(
        Route("/ui/{version}/{path:path}", asset, methods=["GET"], include_in_schema=False)
    )
    app.router.routes.append(_ShellRoute("/{path:path}", shell, methods=["GET"], include_in_schema=False))


class _ShellRoute(Route):
    """Matches GET and HEAD of any path outside :data:`RESERVED`, and nothing else (a POST
    to ``/x`` stays a 404, not a 405)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD") or _reserved(path):
            return Match.NONE, {}
        return super().matches(scope)


def _reserved(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in RESERVED)


def _send(request: Request, found: a.Asset, cache_control: str) -> Response:
    headers = {"Cache-Control": cache_control, "Vary": "Accept-Encoding"}
    body = found.body
    if found.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body = found.gzipped
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=found.content_type, headers=headers)
