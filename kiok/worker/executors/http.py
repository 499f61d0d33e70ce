"""``http`` tasks: one request (``config.url``, ``method``, ``body``, ``headers`` as a JSON
object); a 2xx answer succeeds, anything else fails with the status in ``error``. The
response body goes to the task log.

The config comes with its placeholders resolved, so a trigger arg, a connection or the
server called (a redirect) may have made any field anything: what no request can be made of
fails the attempt saying why, as a refused connection does. Nothing a DAG, its args or a
server sends raises out of ``run`` (the driver would log an ERROR and blame kiok)."""

from __future__ import annotations

import asyncio
import re
import reprlib

import httpx

from kiok.dag.validate import HTTP_METHODS, header_problem, http_headers
from kiok.security.redact import unquoted
from kiok.worker.executors.base import AttemptContext, AttemptResult

_MAX_LOGGED_BODY = 1024 * 1024
_MAX_PORT = 65535
#: Quotes a method a param made in an error without quoting all 64 KiB of it.
_SHORT = reprlib.Repr()
_SHORT.maxstring = 40
#: Failures whose text is httpx's own (a timeout, a redirect loop): read by every reader of
#: the run. Any other failure of the exchange may quote what the server sent, which is output:
#: a malformed status or header line, a body that does not decode, a redirect's
#: ``Location`` (a TLS failure names the host a redirect chose). Its text goes first, then
#: ``(<failure> from <method> <url>)``, the form ``kiok.master.views.own_error`` cuts for a
#: caller without ``logs:Read`` (found by the attack probe: a server's status line read as a
#: customer's data reached callers who may read run states alone).
_OWN_WORDS = (httpx.TimeoutException, httpx.TooManyRedirects)
#: Whitespace in a URL as an error shows it: escaped, so that no URL can end an error in the
#: form above (" (Name from GET x)") or a python task's (" (exit code 0)") and have a caller
#: without ``logs:Read`` read its text instead of kiok's.
_SPACE = re.compile(r"\s")


class HttpExecutor:
    def __init__(self, connect_timeout_s: float) -> None:
        self._connect_timeout_s = connect_timeout_s

    async def run(self, ctx: AttemptContext) -> AttemptResult:
        cfg = ctx.task.config
        url = cfg["url"]
        method = cfg.get("method", "GET").upper()
        if method not in HTTP_METHODS:  # before httpx, which raises TypeError for 'É'
            allowed = ", ".join(HTTP_METHODS)
            return AttemptResult(
                False, error=f"config.method: unknown method {_SHORT.repr(method)}; allowed: {allowed}"
            )
        try:
            headers = http_headers(cfg.get("headers", ""))
            for name, value in headers.items():
                problem = header_problem(name, value)
                if problem is not None:
                    raise ValueError(problem)
        except ValueError as e:
            return AttemptResult(False, error=f"config.headers: {e}")
        body = cfg.get("body")
        timeout = httpx.Timeout(ctx.timeout_s, connect=self._connect_timeout_s)
        request = asyncio.ensure_future(self._send(method, url, headers, body, timeout, ctx))
        stopper = asyncio.ensure_future(ctx.stop.wait())
        try:
            done, _ = await asyncio.wait(
                {request, stopper}, timeout=ctx.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopper.cancel()
        if request not in done:
            request.cancel()
            if stopper in done:
                return AttemptResult(False, error="cancelled", stopped=True)
            return AttemptResult(False, error=f"timed out after {ctx.timeout_s:g}s", timed_out=True)
        return request.result()

    async def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: str | None,
        timeout: httpx.Timeout,
        ctx: AttemptContext,
    ) -> AttemptResult:
        # A URL a connection made of text that is not UTF-8 (a lone surrogate) still logs.
        ctx.output(f"{method} {url}\n".encode(errors="backslashreplace"))
        if not any(name.lower() == "accept-encoding" for name in headers):
            # Not compressed unless the task asks: 64 KiB of gzip can unpack to 64 MiB at once.
            headers = {**headers, "Accept-Encoding": "identity"}
        try:
            request = httpx.Request(method, url, headers=headers, content=body)
            await _check_port(request)
        except (httpx.InvalidURL, ValueError, TypeError) as e:
            # What params or connections made of the request (a URL with a port that is no
            # number, a body that is no text): the task's failure, like a refused connection.
            # What it quotes may be a piece of a connection value that masking cannot see.
            return AttemptResult(
                False, error=f"could not build the request: {type(e).__name__}: {unquoted(str(e))}"
            )
        try:
            async with httpx.AsyncClient(
                timeout=timeout, follow_redirects=True, event_hooks={"request": [_check_port]}
            ) as client:
                resp = await client.send(request, stream=True)
                try:
                    ctx.output(f"HTTP {resp.status_code}\n".encode())
                    await _log_body(resp, ctx)
                finally:
                    await resp.aclose()
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as e:
            # Masked here, the part kiok wrote left whole (a secret "from" would hide the form).
            shown = _shown_url(url, ctx)
            if isinstance(e, _OWN_WORDS):
                error = f"{type(e).__name__}: {ctx.mask(str(e)) or 'request failed'} ({method} {shown})"
            else:
                error = f"{ctx.mask(str(e) or 'request failed')} ({type(e).__name__} from {method} {shown})"
            return AttemptResult(False, error=error, error_masked=True)
        status = f"HTTP {resp.status_code}"
        if 200 <= resp.status_code < 300:
            return AttemptResult(True, exit_code=None, detail=status)
        error = f"{status} from {method} {_shown_url(url, ctx)}"
        return AttemptResult(False, error=error, detail=status, error_masked=True)


def _shown_url(url: str, ctx: AttemptContext) -> str:
    """``url`` as an error shows it: secrets masked, then whitespace escaped (``_SPACE``)."""
    return _SPACE.sub(lambda m: f"%{ord(m.group()):02X}", ctx.mask(url))


async def _check_port(request: httpx.Request) -> None:
    """``httpx.InvalidURL`` for a port no socket takes: httpx parses ``:99999`` and the
    connect then raises ``OverflowError`` inside a task group, out of any ``except``. Also
    a request hook, for a redirect's ``Location``."""
    port = request.url.port
    if port is not None and port > _MAX_PORT:
        raise httpx.InvalidURL(f"port {port} is out of range (0-{_MAX_PORT})")


async def _log_body(resp: httpx.Response, ctx: AttemptContext) -> None:
    """The first ``_MAX_LOGGED_BODY`` bytes of the answer into the task log; the rest is not
    read (a task fetching a huge file must not hold it all in the worker's memory)."""
    logged = 0
    async for chunk in resp.aiter_bytes():
        room = _MAX_LOGGED_BODY - logged
        ctx.output(chunk[:room])
        logged += min(len(chunk), room)
        if logged >= _MAX_LOGGED_BODY:
            ctx.note("[kiok] the rest of the answer is not logged (over 1 MiB)")
            return
