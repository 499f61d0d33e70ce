"""The outermost admin HTTP middleware: a request id per request (the client's
``X-Request-Id`` when it is sane, else a new one), set for every log line of the request and
echoed in the answer; and the request's latency by method, route template and status class.

The route is the template that matched (``/api/v1/runs/{run_id}``), never the raw path: a
path per run would make a time series per run. A request no route took counts as
``(unmatched)`` (404s, answers of a gate or of the leader a follower forwarded to)."""

from __future__ import annotations

import re
import time
import uuid
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kiok import logs

if TYPE_CHECKING:
    from kiok.master.node import MasterNode

_SANE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
UNMATCHED = "(unmatched)"


class RequestObserver:
    def __init__(self, app: ASGIApp, node: MasterNode) -> None:
        self.app = app
        self.node = node

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = logs.REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logs.REQUEST_ID.reset(token)
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            self.node.metrics.http_duration.labels(
                scope.get("method", ""), template, f"{status // 100}xx"
            ).observe(time.perf_counter() - started)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _SANE.fullmatch(text):
                return text
    return uuid.uuid4().hex[:16]
