"""Refusing JSON request bodies that kiok would choke on, before any endpoint parses them.

A body nested thousands of levels deep, an integer of thousands of digits (or just past 64
bits: the store's encoder cannot hold it), NaN or infinity get a 400 that names the problem
and where it is, on every endpoint, FastAPI's own body parsing included. Bodies that are not
JSON, or not valid JSON, pass untouched: the endpoint says what is wrong with them (a DAG may
be YAML). Runs inside ``BodyLimit``, so it never reads more than the size limit.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kiok.core.document_limits import MAX_DEPTH, document_problem, parse_json_int
from kiok.errors import InvalidInput
from kiok.master.http_errors import error_response

_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})


def json_body_problem(body: bytes) -> str | None:
    """Why this JSON body is refused, or None (also for a body that is not JSON at all)."""
    if not body.strip():
        return None
    try:
        doc = json.loads(body, parse_int=parse_json_int)
    except RecursionError:
        return f"JSON body nested too deeply (at most {MAX_DEPTH} levels)"
    except ValueError:  # not JSON (JSONDecodeError), not UTF-8 (UnicodeDecodeError)
        return None
    problem = document_problem(doc)
    return f"JSON body: {problem}" if problem else None


def _is_json(scope: Scope) -> bool:
    """The bodies FastAPI parses as JSON: no content type, ``application/json``, ``+json``."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            kind: bytes = value.split(b";", 1)[0].strip().lower()
            return kind == b"application/json" or kind.endswith(b"+json")
    return True


class JsonLimits:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _NO_BODY or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        problem = json_body_problem(body)
        if problem:
            await error_response(400, InvalidInput.code, problem)(scope, receive, send)
            return
        await self.app(
            scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send
        )


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` giving ``messages`` first, then what the client sends next (a disconnect)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
