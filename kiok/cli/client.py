"""The HTTP client the CLI uses to talk to a master's admin API (DESIGN §5).

``ApiClient`` wraps one sync ``httpx.Client``: base URL, ``Authorization: Bearer`` header,
one refresh-and-retry on 401 for a saved login, retries of a ``503`` that carries ``Retry-After``
(a master starting, or masters electing a leader) for a bounded time, and error decoding. A server error
``{"error": {"code", "message"}}`` becomes the ``kiok.errors`` class with that code; a failure
that never reached a server answer (refused, timed out, garbage) is a ``CliError``. Given several
masters (a saved context), a request that cannot connect to one is sent to the next.
Nothing here prints or exits: that is ``kiok.cli.main``'s job.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from kiok import errors
from kiok.cli.output import visible
from kiok.security.tls import client_verify

_USER_AGENT = "kiok-cli/0.1"
#: How long, in seconds of ``Retry-After`` waits, a request answered ``503`` is sent again.
RETRY_FOR_S = 30.0
_MIN_RETRY_S = 0.1
#: The 503 codes that mean "not carried out, soon possible": a master starting or without
#: workers, masters electing a leader, too many password checks waiting. (Maintenance mode,
#: also 503, lasts: not retried.)
RETRIED_CODES = frozenset({errors.NotReady.code, errors.NotLeader.code, errors.Overloaded.code})

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
    """A failure on the client side of the wire (no usable answer from the master).

    ``code`` plays the part of a server error's wire code in ``--json`` error output:
    ``unreachable``, ``timeout`` or ``cli_error``."""

    def __init__(self, message: str, code: str = "cli_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Tokens:
    """An access token and, for a login session, the refresh token that renews it.
    ``scheme`` is ``Bearer``, or ``AccessKey`` when ``access`` is ``<id>:<secret>``."""

    access: str
    refresh: str | None = None
    scheme: str = "Bearer"


class NotText(CliError):
    """An argument that cannot go into a URL: bytes the shell passed that are not UTF-8, which
    Python keeps as lone surrogates (``$'\\xff'`` becomes ``'\\udcff'``). A usage error."""

    def __init__(self, value: str) -> None:
        super().__init__(f"argument '{visible(_as_typed(value))}' is not UTF-8 text", "invalid_input")


def _as_typed(value: str) -> str:
    """``value`` with each byte the shell passed undecoded (``'\\udcff'``) written ``\\xff``."""
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff" else c for c in value)


def wire_text(value: str) -> str:
    """``value`` unchanged when it can be sent (encoded as UTF-8), else ``NotText``."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise NotText(value) from None
    return value


def segment(value: str) -> str:
    """``value`` quoted for use as one URL path segment (ids may hold ``/`` or ``?``);
    ``NotText`` when it is not text."""
    return quote(wire_text(value), safe="")


@functools.cache
def _error_classes() -> dict[str, type[errors.KiokError]]:
    found: dict[str, type[errors.KiokError]] = {}
    todo: list[type[errors.KiokError]] = [errors.KiokError]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return found


#: The most of a foreign answer's body an error message quotes.
EXCERPT_CHARS = 120


def excerpt(text: str) -> str:
    """``text`` on one line (blanks and line breaks as single spaces), cut at
    ``EXCERPT_CHARS`` with an ellipsis: a quote from an answer that is not kiok's."""
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


def error_from_response(
    response: httpx.Response, hint: str | None = None, *, reword: Callable[[str], str] | None = None
) -> errors.KiokError:
    """The typed error a non-2xx answer stands for; branches on the wire code, never the text.

    ``hint`` (what the user can do about it) is appended to the message in parentheses;
    ``reword`` makes the message from the answer's own (the code and class stay the same).
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
            message = excerpt(detail if isinstance(detail, str) else json.dumps(detail))
    elif response.text.strip():
        # Not a kiok answer (a proxy's page, another server): a hint of what it was, one line.
        message = f"{message}: {excerpt(response.text)}"
    if reword is not None:
        message = reword(message)
    if hint:
        message = f"{message} ({hint})"
    cls = _error_classes().get(code or "") or _BY_STATUS.get(response.status_code, errors.KiokError)
    exc = cls(message)
    if code and code != exc.code:
        exc.code = code  # keep an unknown wire code visible to callers
    return exc


def _unexpired(token: str | None, now_s: float) -> bool:
    """Whether JWT ``token`` says it has not expired by ``now_s``: read, not verified (only to
    word an error); False when it cannot be read."""
    if token is None:
        return False
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return bool(float(claims["exp"]) > now_s)
    except (IndexError, ValueError, KeyError, TypeError):
        return False


class ApiClient:
    """A thin, synchronous client for ``/api/v1``; close it (or use ``with``) when done.

    ``tokens`` authenticate every request. When they carry a refresh token (a saved
    ``kiok login``), the first 401 triggers one ``POST /api/v1/auth/refresh``; on success the
    new tokens go to ``on_tokens`` (to be saved) and the request is sent again, once.
    An answer ``503`` with ``Retry-After`` and code ``not_ready`` or ``not_leader`` means the request was
    not carried out: it is sent again after that many seconds (through ``sleep``), until
    ``retry_for`` seconds of waiting are used up; ``on_retry`` hears of the first such answer
    of each request (the error it stands for, and ``retry_for``). ``server`` names the other end in errors,
    and ``unreachable_hint`` says what to check when it cannot be reached.
    ``fallbacks`` are more masters of the same cluster: a request that cannot connect to
    ``base_url`` (refused, no route, connect timeout: nothing was sent) goes to each in turn; the
    first that answers becomes ``base_url`` for the next requests and is told to ``on_master``.
    A request that connected and then failed is not sent elsewhere (it may have been carried out).
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
        sleep: Callable[[float], None] = time.sleep,
        retry_for: float = RETRY_FOR_S,
        server: str = "kiok master",
        unreachable_hint: str | None = "check --master or KIOK_MASTER",
        on_retry: Callable[[errors.KiokError, float], None] | None = None,
        fallbacks: Sequence[str] = (),
        on_master: Callable[[str], None] | None = None,
    ) -> None:
        self.base_url = base_url
        self._masters = (base_url, *(f for f in fallbacks if f != base_url))
        self._on_master = on_master
        self.tokens = tokens
        self._timeout = timeout
        self._on_tokens = on_tokens
        self._sleep = sleep
        self._retry_for = retry_for
        self._server = server
        self._unreachable_hint = unreachable_hint
        self._on_retry = on_retry
        #: The last refresh was answered 401: the cluster refused the saved login.
        self._refresh_refused = False
        https = next((m for m in self._masters if m.startswith("https:")), base_url)
        try:
            verify = client_verify(https, ca_file)
        except OSError as e:  # missing, unreadable, or no certificate in it (ssl.SSLError)
            raise CliError(
                f"cannot use CA bundle {ca_file}: {e.strerror or e} (check --ca or KIOK_TLS_CA)"
            ) from e
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport,
            verify=verify,
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
        """Send one request (``path`` under the base URL) and decode its answer; ``NotText``
        for a query value that is not text."""
        for value in (params or {}).values():
            if isinstance(value, str):
                wire_text(value)
        refreshed: bool | None = None  # None: not tried; else whether the refresh worked
        waited = 0.0
        while True:
            response = self._send(method, path, content, content_type, params, auth)
            if response.status_code == 401 and auth and refreshed is None and self._refreshable():
                refreshed = self._refresh()
                if refreshed:
                    continue
            delay = retry_after(response)
            if delay is None or waited >= self._retry_for:
                break
            if not waited and self._on_retry is not None:
                self._on_retry(error_from_response(response), self._retry_for)
            delay = min(max(delay, _MIN_RETRY_S), self._retry_for - waited)
            self._sleep(delay)
            waited += delay
        if response.is_success:
            return _decode(response)
        hint = None
        if response.status_code == 401 and auth:
            if not self.tokens:
                hint = "not logged in: run `kiok login`, pass --token or set KIOK_ACCESS_KEY"
            elif (
                refreshed is False and self._refresh_refused and _unexpired(self.tokens.refresh, time.time())
            ):
                # Refused though not expired: the cluster no longer accepts this login (its
                # signing key renewed by a restore, the password changed, the user removed),
                # which the answer's own message says.
                raise error_from_response(
                    response,
                    reword=lambda said: f"your saved login is no longer valid ({said}): run `kiok login`",
                )
            elif refreshed is False:
                hint = "saved login expired: run `kiok login`"
        elif waited:
            hint = f"still so after retrying for {waited:g}s"
        raise error_from_response(response, hint)

    def _refreshable(self) -> bool:
        return self.tokens is not None and self.tokens.refresh is not None

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
            self._refresh_refused = answer.status_code == 401
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
            headers["Authorization"] = _authorization(self.tokens)
        order = [self.base_url, *(m for m in self._masters if m != self.base_url)]
        failures: list[tuple[str, httpx.HTTPError]] = []
        for url in order:
            where = f"{self._server} at {url}"
            try:
                response = self._http.request(
                    method, url + path, content=content, headers=headers, params=params
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                failures.append((url, e))
                continue
            except httpx.TimeoutException as e:
                raise CliError(f"{where} did not answer within {self._timeout:g}s", "timeout") from e
            except httpx.HTTPError as e:
                raise CliError(f"cannot talk to {where}: {e}{_https_hint(url, e)}", "unreachable") from e
            except httpx.InvalidURL as e:  # e.g. from a hand-edited credentials file
                raise CliError(f"{url} is not a usable master URL: {e}") from e
            if url != self.base_url:
                self.base_url = url
                if self._on_master is not None:
                    self._on_master(url)
            return response
        raise self._unreachable(failures)

    def _unreachable(self, failures: list[tuple[str, httpx.HTTPError]]) -> CliError:
        """The error for a request no master would take: each one tried and why."""
        hint = f" ({self._unreachable_hint})" if self._unreachable_hint else ""
        if len(failures) == 1:
            url, e = failures[0]
            if isinstance(e, httpx.ConnectTimeout):
                return CliError(
                    f"{self._server} at {url} did not answer within {self._timeout:g}s{hint}", "timeout"
                )
            return CliError(f"cannot reach {self._server} at {url}: {e}{hint}", "unreachable")
        tried = "; ".join(f"{url}: {e}" for url, e in failures)
        return CliError(f"cannot reach any {self._server} ({tried}){hint}", "unreachable")


def _authorization(tokens: Tokens) -> str:
    """The ``Authorization`` value; a token or key is printable ASCII, so anything else is
    refused here with where it came from (an HTTP header cannot carry it)."""
    value = f"{tokens.scheme} {tokens.access}"
    if not (tokens.access.isascii() and tokens.access.isprintable()) or " " in tokens.access:
        where = (
            "the access key (--access-key, KIOK_ACCESS_KEY)"
            if tokens.scheme == "AccessKey"
            else "the token (--token, KIOK_USER_TOKEN or the saved login)"
        )
        raise CliError(f"{where} holds characters no token has (only printable ASCII, no spaces)")
    return value


def retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait before sending again: only for a ``503`` of ``RETRIED_CODES``
    that says ``Retry-After: <s>`` (the request was not carried out); None for anything else,
    an HTTP-date included."""
    if response.status_code != 503 or error_from_response(response).code not in RETRIED_CODES:
        return None
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


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


def _https_hint(url: str, error: httpx.HTTPError) -> str:
    """A hint when an ``http://`` master closed the connection without an HTTP answer: what a
    TLS server does with a request in plain text (the master may speak https)."""
    if not url.startswith("http://") or not isinstance(error, httpx.RemoteProtocolError):
        return ""
    if "without sending a response" not in str(error):
        return ""
    return f" (it closed the connection without an HTTP answer: if it serves TLS, use https://{url[7:]})"
