"""The HTTP client the CLI uses to talk to a master's admin API (DESIGN §5).

``ApiClient`` wraps one sync ``httpx.Client``: base URL, ``Authorization: Bearer`` header,
one refresh-and-retry on 401 for a saved login, and error decoding. A server error
``{"error": {"code", "message"}}`` becomes the ``kiok.errors`` class with that code; a failure
that never reached a server answer (refused, timed out, garbage) is a ``CliError``.
Nothing here prints or exits: that is ``kiok.cli.main``'s job.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from kiok import errors
from kiok.security.tls import client_verify

_USER_AGENT = "kiok-cli/0.1"

# Used only when the server answers with a code this client does not know.
_BY_STATUS: dict[int, type[errors.KiokError]] = {
    400: errors.InvalidInput,
    401: errors.Unauthenticated,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    422: errors.InvalidInput,
    429: errors.RateLimited,
    503: errors.NotReady,
}


class CliError(Exception):
    """A failure on the client side of the wire (no usable answer from the master)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Tokens:
    """An access token and, for a login session, the refresh token that renews it."""

    access: str
    refresh: str | None = None


def segment(value: str) -> str:
    """``value`` quoted for use as one URL path segment (ids may hold ``/`` or ``?``)."""
    return quote(value, safe="")


@functools.cache
def _error_classes() -> dict[str, type[errors.KiokError]]:
    found: dict[str, type[errors.KiokError]] = {}
    todo: list[type[errors.KiokError]] = [errors.KiokError]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return found


def error_from_response(response: httpx.Response, hint: str | None = None) -> errors.KiokError:
    """The typed error a non-2xx answer stands for; branches on the wire code, never the text.

    ``hint`` (what the user can do about it) is appended to the message in parentheses.
    """
    code: str | None = None
    message = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            code = err.get("code") if isinstance(err.get("code"), str) else None
            if isinstance(err.get("message"), str) and err["message"]:
                message = err["message"]
        elif "detail" in body:  # a framework-generated answer, not ours
            detail = body["detail"]
            message = detail if isinstance(detail, str) else json.dumps(detail)
    elif response.text.strip():
        message = f"{message}: {response.text.strip()[:200]}"
    if hint:
        message = f"{message} ({hint})"
    cls = _error_classes().get(code or "") or _BY_STATUS.get(response.status_code, errors.KiokError)
    exc = cls(message)
    if code and code != exc.code:
        exc.code = code  # keep an unknown wire code visible to callers
    return exc


class ApiClient:
    """A thin, synchronous client for ``/api/v1``; close it (or use ``with``) when done.

    ``tokens`` authenticate every request. When they carry a refresh token (a saved
    ``kiok login``), the first 401 triggers one ``POST /api/v1/auth/refresh``; on success the
    new tokens go to ``on_tokens`` (to be saved) and the request is sent again, once.
    Every method returns the decoded JSON body (``{}`` for an empty one) and raises a
    ``KiokError`` subclass for an error answer or ``CliError`` when no answer came.
    """

    def __init__(
        self,
        base_url: str,
        *,
        tokens: Tokens | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        on_tokens: Callable[[Tokens], None] | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.base_url = base_url
        self.tokens = tokens
        self._timeout = timeout
        self._on_tokens = on_tokens
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            transport=transport,
            verify=client_verify(base_url, ca_file),
            headers={"User-Agent": _USER_AGENT, "Accept": "application/json"},
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, *, auth: bool = True) -> Any:
        content = None if body is None else json.dumps(body).encode()
        return self.request("POST", path, content=content, content_type="application/json", auth=auth)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        content_type: str | None = None,
        params: Mapping[str, str | int] | None = None,
        auth: bool = True,
    ) -> Any:
        """Send one request (``path`` under the base URL) and decode its answer."""
        response = self._send(method, path, content, content_type, params, auth)
        if response.status_code == 401 and auth and self.tokens and self.tokens.refresh and self._refresh():
            response = self._send(method, path, content, content_type, params, auth)
        if response.is_success:
            return _decode(response)
        hint = None
        if response.status_code == 401 and auth:
            if not self.tokens:
                hint = "not logged in: run `kiok login` or pass --token"
            elif self.tokens.refresh:
                hint = "saved login expired: run `kiok login`"
        raise error_from_response(response, hint)

    def _refresh(self) -> bool:
        assert self.tokens is not None and self.tokens.refresh is not None
        try:
            answer = self._send(
                "POST",
                "/api/v1/auth/refresh",
                json.dumps({"refreshToken": self.tokens.refresh}).encode(),
                "application/json",
                None,
                False,
            )
            body = answer.json() if answer.is_success else None
        except ValueError:
            return False
        if not isinstance(body, dict) or not isinstance(body.get("accessToken"), str):
            return False
        refresh = body.get("refreshToken")
        self.tokens = Tokens(
            body["accessToken"], refresh if isinstance(refresh, str) else self.tokens.refresh
        )
        if self._on_tokens is not None:
            self._on_tokens(self.tokens)
        return True

    def _send(
        self,
        method: str,
        path: str,
        content: bytes | None,
        content_type: str | None,
        params: Mapping[str, str | int] | None,
        auth: bool,
    ) -> httpx.Response:
        headers: dict[str, str] = {}
        if content is not None and content_type:
            headers["Content-Type"] = content_type
        if auth and self.tokens is not None:
            headers["Authorization"] = f"Bearer {self.tokens.access}"
        try:
            return self._http.request(method, path, content=content, headers=headers, params=params)
        except httpx.TimeoutException as e:
            raise CliError(f"kiok master at {self.base_url} did not answer within {self._timeout:g}s") from e
        except httpx.ConnectError as e:
            raise CliError(f"cannot reach kiok master at {self.base_url}: {e}") from e
        except httpx.HTTPError as e:
            raise CliError(f"cannot talk to kiok master at {self.base_url}: {e}") from e


def _decode(response: httpx.Response) -> Any:
    if not response.content.strip():
        return {}
    try:
        return response.json()
    except ValueError as e:
        raise CliError(
            f"unexpected answer from {response.request.url}: not JSON "
            f"({response.headers.get('content-type', 'no content type')})"
        ) from e
