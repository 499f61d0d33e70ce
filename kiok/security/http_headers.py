"""Security headers on every answer of kiok's HTTP ports (admin API, worker status).

Set over whatever the app (or, for a forwarded request, the leader) answered, so every
response carries exactly one of each: ``X-Content-Type-Options: nosniff``, a strict
``Content-Security-Policy`` (no inline script or eval, no framing: ready for a UI served from
the same origin), ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY`` for browsers
without ``frame-ancestors``, and ``Cache-Control: no-store`` under the given path prefixes
(API answers carry tokens and secrets; nothing there is meant for a cache).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
_NO_STORE = ((b"cache-control", b"no-store"),)


class SecurityHeaders:
    def __init__(self, app: ASGIApp, no_store_prefixes: Sequence[str] = ("/",)) -> None:
        self.app = app
        self.no_store_prefixes = tuple(no_store_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = HEADERS
        if str(scope.get("path", "")).startswith(self.no_store_prefixes):
            extra = HEADERS + _NO_STORE
        names = {name for name, _ in extra}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in names]
                message = {**message, "headers": [*kept, *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
