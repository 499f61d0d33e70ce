"""The one place where errors become HTTP responses: ``{"error": {"code", "message"}}``.

Every ``KiokError`` maps by type to a status; request-validation failures become 400 with
the offending field named; a client that closed the connection before its body was read
is a 499 (nobody reads the answer; one DEBUG line, counted as a 4xx in the metrics); anything
unexpected becomes a 500 whose body says nothing internal (the traceback goes to the log only).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from kiok import errors as e
from kiok import logs
from kiok.security.http_headers import HEADERS

log = logging.getLogger(__name__)

#: ``Retry-After`` of a maintenance refusal that does not carry the master's setting
#: (``kiok.cluster.maintenance.retry.after.seconds``, whose default this is).
DEFAULT_MAINTENANCE_RETRY_S = 30

#: The status of a request whose client closed the connection before it was read whole
#: (nginx's "client closed request"): the client's doing, not the server's.
CLIENT_CLOSED = 499

_STATUS: tuple[tuple[type[e.KiokError], int], ...] = (
    (e.PayloadTooLarge, 413),
    (e.InvalidInput, 400),
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.Unauthenticated, 401),
    (e.PasswordChangeRequired, 403),
    (e.Forbidden, 403),
    (e.AuthError, 401),
    (e.RateLimited, 429),
    (e.Overloaded, 503),
    (e.NotReady, 503),
    (e.StoreUnavailable, 503),
    (e.MaintenanceMode, 503),
    (e.NotLeader, 503),
    (e.ProtocolError, 400),
)


def status_for(err: e.KiokError) -> int:
    for cls, status in _STATUS:
        if isinstance(err, cls):
            return status
    return 500


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, object] | None = None,
) -> JSONResponse:
    """The error body; ``extra`` adds top-level fields beside ``error`` (e.g. ``maintenanceMode``).
    A message quoting hostile input that is not text (a lone surrogate) is sent escaped: the
    answer must still be UTF-8."""
    message = message.encode("utf-8", "backslashreplace").decode()
    body: dict[str, object] = {"error": {"code": code, "message": message}, **(extra or {})}
    return JSONResponse(body, status_code=status, headers=headers)


def client_closed(method: str, path: str) -> JSONResponse:
    """The answer to a request whose client went away mid-body (``ClientDisconnect``,
    wherever the body is read): nobody reads it, it only sets the status the metrics see."""
    log.debug("client closed the connection during %s %s before its body was read", method, path)
    return error_response(CLIENT_CLOSED, "client_closed", "the client closed the connection")


def install(app: FastAPI) -> None:
    @app.exception_handler(e.KiokError)
    async def _kiok(_: Request, err: e.KiokError) -> JSONResponse:
        headers = None
        extra: dict[str, object] | None = None
        if isinstance(err, e.RateLimited | e.Overloaded):
            headers = {"Retry-After": str(max(1, round(err.retry_after_s)))}
        if isinstance(err, e.Unauthenticated):
            headers = {"WWW-Authenticate": "Bearer"}
        if isinstance(err, e.NotLeader) and not err.outcome_unknown:
            headers = {"Retry-After": "1"}  # it did not take effect: a client sends it again
        if isinstance(err, e.MaintenanceMode):
            retry = max(1, err.retry_after_s or DEFAULT_MAINTENANCE_RETRY_S)
            headers = {"Retry-After": str(retry)}
            extra = {"maintenanceMode": True, "retryAfterSeconds": retry}
        if isinstance(err, e.DagValidationError):
            # Where the problem is, for an editor to mark: the field path and the line.
            extra = {"errors": [{"path": err.field, "line": err.line, "message": err.detail}]}
        return error_response(status_for(err), err.code, err.message, headers, extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = []
        for item in err.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            problems.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
            if item.get("type") == "json_invalid":  # loc: ("body", <offset>)
                error = (item.get("ctx") or {}).get("error", "not JSON")
                problems[-1] = f"body: invalid JSON at character {where or 0}: {error}"
            elif item.get("type") == "model_attributes_type" and tuple(item.get("loc", ())) == ("body",):
                # The body was not read as JSON at all: its Content-Type said something else.
                problems[-1] = "body: expected a JSON object, sent with Content-Type: application/json"
        return error_response(400, e.InvalidInput.code, "; ".join(problems) or "invalid request")

    @app.exception_handler(ClientDisconnect)
    async def _client_disconnect(request: Request, _: ClientDisconnect) -> JSONResponse:
        return client_closed(request.method, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        if isinstance(err.__cause__, ClientDisconnect):  # FastAPI reading a declared body
            return client_closed(request.method, request.url.path)
        # 400: the framework could not read the request (JSON bodies are read and refused
        # with a reason before that, by ``JsonLimits``): a malformed request, like any other.
        code = {400: e.InvalidInput.code, 404: "not_found", 405: "method_not_allowed"}.get(
            err.status_code, "http_error"
        )
        message = err.detail if isinstance(err.detail, str) else "request failed"
        if err.status_code == 404:
            message = "no such endpoint"
        return error_response(err.status_code, code, message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        logs.mark_logged(err)  # Starlette re-raises it to uvicorn, which would log it again
        # Answered by Starlette's outermost middleware, past SecurityHeaders: set them here.
        headers = {k.decode(): v.decode() for k, v in HEADERS} | {"Cache-Control": "no-store"}
        return error_response(500, "internal", "internal error; see the master's log", headers)
