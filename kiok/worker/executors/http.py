"""``http`` tasks: one request (``config.url``, ``method``, ``body``, ``headers`` as a JSON
object); a 2xx answer succeeds, anything else fails with the status in ``error``. The
response body goes to the task log."""

from __future__ import annotations

import asyncio
import json

import httpx

from kiok.worker.executors.base import AttemptContext, AttemptResult

_MAX_LOGGED_BODY = 1024 * 1024


class HttpExecutor:
    def __init__(self, connect_timeout_s: float) -> None:
        self._connect_timeout_s = connect_timeout_s

    async def run(self, ctx: AttemptContext) -> AttemptResult:
        cfg = ctx.task.config
        url = cfg["url"]
        method = cfg.get("method", "GET").upper()
        try:
            headers = json.loads(cfg["headers"]) if cfg.get("headers") else {}
        except ValueError:
            return AttemptResult(False, error="config.headers is not a JSON object")
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
        ctx.output(f"{method} {url}\n".encode())
        if not any(name.lower() == "accept-encoding" for name in headers):
            # Not compressed unless the task asks: 64 KiB of gzip can unpack to 64 MiB at once.
            headers = {**headers, "Accept-Encoding": "identity"}
        try:
            request = httpx.Request(method, url, headers=headers, content=body)
        except (httpx.InvalidURL, ValueError, TypeError) as e:
            # What params or connections made of the request (a non-ASCII header or method, a
            # port that is no number): the task's failure, like a refused connection.
            return AttemptResult(False, error=f"could not build the request: {type(e).__name__}: {e}")
        try:
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client:
                resp = await client.send(request, stream=True)
                try:
                    ctx.output(f"HTTP {resp.status_code}\n".encode())
                    await _log_body(resp, ctx)
                finally:
                    await resp.aclose()
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as e:
            return AttemptResult(False, error=f"{type(e).__name__}: {e or 'request failed'} ({method} {url})")
        status = f"HTTP {resp.status_code}"
        if 200 <= resp.status_code < 300:
            return AttemptResult(True, exit_code=None, detail=status)
        return AttemptResult(False, error=f"{status} from {method} {url}", detail=status)


async def _log_body(resp: httpx.Response, ctx: AttemptContext) -> None:
    """The first ``_MAX_LOGGED_BODY`` bytes of the answer into the task log; the rest is not
    read (a task fetching a huge file must not hold it all in the worker's memory)."""
    logged = 0
    async for chunk in resp.aiter_bytes():
        room = _MAX_LOGGED_BODY - logged
        ctx.output(chunk[:room])
        logged += min(len(chunk), room)
        if logged >= _MAX_LOGGED_BODY:
            ctx.output(b"\n[kiok] the rest of the answer is not logged (over 1 MiB)\n")
            return
