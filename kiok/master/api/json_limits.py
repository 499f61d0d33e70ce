"""Refusing JSON request bodies that kiok would choke on, before any endpoint parses them.

A body nested thousands of levels deep, of more than ``MAX_VALUES`` values, with an integer of
thousands of digits (or just past 64 bits: the store's encoder cannot hold it), NaN or
infinity, a repeated key, or bytes that are not UTF-8 gets a 400 that names the problem (and
where it is), on every endpoint, FastAPI's own body parsing included. This runs before
authentication and on the event loop (``json.loads`` holds the GIL: a thread would not help),
so the number of values is bounded by counting bytes (``bytes.count``, GB/s) before the body
is parsed at all. Bodies that are not valid JSON pass untouched: the endpoint says what is
wrong with them (a DAG may be YAML). Runs inside ``BodyLimit``, so it never reads more than
the size limit.
"""

from __future__ import annotations

import codecs
import email.message
import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kiok.core.document_limits import MAX_DEPTH, DuplicateKey, document_problem, parse_json_int, unique_object
from kiok.errors import InvalidInput
from kiok.master.http_errors import error_response

_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})

#: Values (scalars and containers, keys not counted) a JSON body may hold: as many as a DAG
#: document (``kiok.dag.load``), the largest body an endpoint takes.
MAX_VALUES = 200_000
#: A JSON string once its escaped backslashes and quotes are gone: every quote left delimits
#: one, so a search from each quote ends at the next (an unterminated last one fails once).
_BARE_STRING = re.compile(rb'"[^"]*"')


def value_bound(body: bytes) -> int:
    """An upper bound on the number of values in the JSON text ``body``, by counting bytes.

    Every value but the outermost follows a ``:`` (an object member), a ``[`` (an array's
    first element) or a ``,``; those bytes inside strings only over-count. The bound is at
    most about twice the values (an object member after the first has both a ``,`` and a
    ``:``) plus the bytes inside strings; when that is past ``2 * MAX_VALUES``, the strings
    are blanked (~10 ms) and the bytes counted again, so a body near the limit whose strings
    are full of commas still passes. For UTF-8 text only (``json_body_problem`` refuses
    other encodings first). Costs milliseconds for a 10 MiB body of millions of ``[]``; linear in every case
    (escapes are dropped first, pairs of backslashes then escaped quotes, all in C: a regex
    walking escapes itself went quadratic on an unterminated string of ``\\"``).
    """
    bound = 1 + body.count(b",") + body.count(b":") + body.count(b"[")
    if bound <= 2 * MAX_VALUES:
        return bound
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    bare = _BARE_STRING.sub(b'""', unescaped)
    return 1 + bare.count(b",") + bare.count(b":") + bare.count(b"[")


def json_body_problem(body: bytes) -> str | None:
    """Why this JSON body is refused, or None (also for a body that is not JSON at all)."""
    encoding = json.detect_encoding(body)
    if not encoding.startswith("utf-8"):
        # JSON between systems is UTF-8 (RFC 8259); counting bytes of UTF-16 or UTF-32 would
        # miss its escapes, and ``json.loads`` would parse it whole on the event loop.
        return f"body is {encoding.upper()}, not UTF-8 text; send JSON as UTF-8"
    if body.startswith(codecs.BOM_UTF8):
        body = body[len(codecs.BOM_UTF8) :]
    head = body.lstrip()[:1]
    if not head:
        return None
    # Only an object or an array can hold many values; anything else that is not JSON (a
    # YAML DAG sent without a content type) is the endpoint's to judge, and fails fast here.
    if head in (b"{", b"[") and value_bound(body) > 2 * MAX_VALUES:
        return f"JSON body too large: over {MAX_VALUES} values"
    try:
        doc = json.loads(body, parse_int=parse_json_int, object_pairs_hook=unique_object)
    except RecursionError:
        return f"JSON body nested too deeply (at most {MAX_DEPTH} levels)"
    except DuplicateKey as err:
        return f"JSON body: duplicate key {err.key!r} in an object (each key may appear once)"
    except UnicodeDecodeError as err:  # FastAPI would only say "error parsing the body"
        return f"body is not UTF-8 text ({err.reason} at offset {err.start}); send JSON as UTF-8"
    except ValueError:  # not JSON: the endpoint says what is wrong with it
        return None
    problem = document_problem(doc, max_values=MAX_VALUES)
    return f"JSON body: {problem}" if problem else None


def _is_json(scope: Scope) -> bool:
    """Whether FastAPI may parse this body as JSON: no content type (older FastAPI does),
    and every type its own test takes, decided by that same test (``fastapi.routing``: the
    header read by ``email.message``), so that no spelling reads as JSON to it and not here.
    Decided on bytes, ``application/json`` followed by a no-break space (``\\xa0``, which
    ``bytes.strip`` keeps and ``str.strip`` drops) skipped every check below (the attacker
    probe of session 29: 10 MiB of ``[]`` held the event loop 18 s; a repeated key was taken)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":  # the first, as Starlette's ``headers.get`` takes it
            return _parsed_as_json(value.decode("latin-1"))
    return True


def _parsed_as_json(content_type: str) -> bool:
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


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
