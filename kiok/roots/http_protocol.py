"""The HTTP protocol of kiok's ports (admin API, worker status): uvicorn's (httptools), with
the three limits it lacks.

uvicorn waits for ever on a connection that sends nothing, half its headers or part of its
body: anyone who can reach the port (no login needed) could hold thousands of them, until the
process runs out of file descriptors, and with them RocksDB's files, the workers' connections
and Raft's. So:

- a request must arrive whole (headers and body) within ``kiok.http.request.timeout.ms`` of
  the connection opening or the previous response ending; otherwise the connection is closed
  (with ``408`` when part of a request came);
- at most ``kiok.http.max.connections`` connections are open at once, and at most
  ``kiok.http.max.connections.per.address`` from one address (a trusted proxy's excepted);
  one more is closed at once, before anything is read from it. The second keeps one host
  from taking every connection (the health probes' and the masters' own forwarded writes);
- a request's head (request line and headers) is at most ``MAX_HEADER_BYTES``: past it the
  answer is ``431`` and the connection is closed. httptools keeps a header whole until it
  ends, so without a limit one header of 100 MB would cost the process 200 MB.

A request the parser cannot read at all is answered with kiok's JSON error shape too (``400
invalid_input``), not uvicorn's ``text/plain``.

With TLS, the limits hold from the moment the TCP connection is accepted, handshake
included: asyncio would call ``connection_made`` only after the handshake (and give it 60 s),
so connections that never finish one would be neither counted nor timed. So uvicorn is not
given the certificate: the protocol takes the plain connection, counts it, starts its time,
and upgrades it itself (``loop.start_tls``); the first request's time covers the handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import ssl
from dataclasses import dataclass
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import get_remote_addr

_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

#: The largest request head (request line and headers, counted as the name and value bytes
#: plus four for each line's ``: `` and CRLF), whatever the port. Not a setting: no kiok
#: client comes near it (a token is about 1 KiB).
MAX_HEADER_BYTES = 64 * 1024
#: What a head may take in received bytes before it is complete (then counted exactly): the
#: limit, plus one read's worth of the request before it (asyncio reads up to 256 KiB at once).
_RAW_HEAD_BYTES = MAX_HEADER_BYTES + 256 * 1024


def _closing_answer(status: str, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer in kiok's JSON error shape, closing the connection: for what
    is refused before any route runs (the parser's protocol writes it itself)."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: application/json\r\n"
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


_HEAD_TOO_LARGE = _closing_answer(
    "431 Request Header Fields Too Large",
    "headers_too_large",
    f"request line and headers over {MAX_HEADER_BYTES} bytes",
)
#: The answer to a request the parser cannot read (a raw ``\xff`` in the path, a control
#: character in a header, two ``Content-Length``): uvicorn's is ``text/plain``.
_MALFORMED = _closing_answer(
    "400 Bad Request",
    "invalid_input",
    "malformed HTTP request: the request line or a header cannot be parsed",
)


class _HeadTooLarge(Exception):
    """Raised from a parser callback: httptools stops there (and raises a parser error)."""


@dataclass(frozen=True)
class HttpLimits:
    request_timeout_s: float = 60.0
    max_connections: int = 512
    max_per_address: int = 256
    #: Networks not limited per address: reverse proxies, which carry many clients.
    unlimited: tuple[str, ...] = ()


def limited_protocol(limits: HttpLimits, tls: ssl.SSLContext | None = None) -> type[HttpToolsProtocol]:
    """uvicorn's protocol class with ``limits`` (uvicorn makes one instance per connection;
    the count per address is the server's, held by this class); serving TLS with ``tls``
    (then uvicorn's config must have no certificate: the connections come plain)."""

    class Limited(_LimitedProtocol):
        _limits = limits
        _tls = tls
        _unlimited = tuple(ipaddress.ip_network(n, strict=False) for n in limits.unlimited)
        _per_address: ClassVar[dict[str, int]] = {}

    return Limited


class _LimitedProtocol(HttpToolsProtocol):
    """The deadline runs while the connection waits on its client: from the connection or
    the last answer until a request is in whole, and while the rest of a request is still
    coming (even after its answer, which may come first). It does not run while every
    request in is being answered (or waits its turn, pipelined)."""

    _limits = HttpLimits()
    _tls: ssl.SSLContext | None = None
    _unlimited: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    #: Connections open per client address, on this protocol's server (``limited_protocol``).
    _per_address: ClassVar[dict[str, int]] = {}
    _deadline: asyncio.TimerHandle | None = None
    #: Part of a request has come, not all of it (a 408 says why it is closed).
    _receiving = False
    #: The address this connection is counted under (None: not counted).
    _counted: str | None = None
    #: TLS: the handshake under way (its task), and what came right after it, before
    #: uvicorn's ``connection_made`` had the TLS transport (None: no handshake under way).
    _handshake: asyncio.Task[None] | None = None
    _early: list[bytes] | None = None
    _lost = False
    #: The current request's head: its size as parsed, the bytes received while it was
    #: incomplete, whether it is (headers not all in yet), and whether it was refused.
    _head_size = 0
    _head_raw = 0
    #: Bytes received since the request's body last grew (its head complete, not it).
    _not_body = 0
    _in_head = False
    _head_refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self._tls is None:
            super().connection_made(transport)
            if self._admit():
                self._await_request()
            return
        # Counted and timed from now, as uvicorn's connection_made would have done after the
        # handshake: the set of connections is the server's (its total, its shutdown).
        self.connections.add(self)
        self.transport = transport  # closing it (deadline, shutdown) ends the handshake
        self.client = get_remote_addr(transport)
        if not self._admit():
            return
        self._await_request()  # the first request's time includes the handshake
        transport.pause_reading()  # nothing is read before start_tls takes the connection
        self._early = []
        self._handshake = self.loop.create_task(self._start_tls(transport, self._tls))

    async def _start_tls(self, plain: asyncio.Transport, context: ssl.SSLContext) -> None:
        """The handshake, then uvicorn's ``connection_made`` with the TLS transport. A failed
        one ends as a closed connection: asyncio calls ``connection_lost`` for some failures
        (a TLS error) and not for others (the peer or the deadline closing it first), so it
        is called here too (it acts once)."""
        tls: asyncio.BaseTransport | None = None
        try:
            with contextlib.suppress(Exception):  # a failed handshake is the client's: no log
                tls = await self.loop.start_tls(
                    plain,
                    self,
                    context,
                    server_side=True,
                    ssl_handshake_timeout=self._limits.request_timeout_s,
                    # After the answer, the wait for the client's close_notify (counted
                    # against the limits all the while): asyncio's default is 30 s.
                    ssl_shutdown_timeout=self._limits.request_timeout_s,
                )
        finally:
            self._handshake = None
            if tls is None:
                self.connection_lost(None)
        if tls is None or self._lost:
            return
        assert isinstance(tls, asyncio.Transport)
        early, self._early = self._early or [], None
        super().connection_made(tls)
        if early:
            self.data_received(b"".join(early))

    def data_received(self, data: bytes) -> None:
        if self._early is not None:  # decrypted before connection_made: kept for it
            self._early.append(data)
            return
        if self._head_refused:
            return
        super().data_received(data)
        if self._head_refused:
            return
        if self._in_head:
            # A head still incomplete: httptools holds its last header until it ends.
            self._head_raw += len(data)
            if self._head_raw > _RAW_HEAD_BYTES:
                self._refuse_head()
        elif self._receiving:
            # Past the head, bytes that bring no body: a chunked request's trailer (or chunk
            # extension), which httptools also holds whole until it ends.
            self._not_body += len(data)
            if self._not_body > _RAW_HEAD_BYTES:
                self._refuse_head()

    def on_body(self, body: bytes) -> None:
        self._not_body = 0
        super().on_body(body)

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def _count_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > MAX_HEADER_BYTES:
            self._head_refused = True
            raise _HeadTooLarge  # uvicorn's data_received answers it (send_400_response)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error (``msg``, httptools' text, is not sent: it may
        quote the request): 431 for a head refused as too large, else a JSON 400 like every
        other kiok error."""
        if self._head_refused:
            self._refuse_head()
            return
        self.transport.write(_MALFORMED)
        self.transport.close()

    def _refuse_head(self) -> None:
        """431 and close: the request is not read further, nor answered otherwise."""
        self._head_refused = True
        self._stop_waiting()
        if not self.transport.is_closing():
            self.transport.write(_HEAD_TOO_LARGE)
            self.transport.close()

    def _admit(self) -> bool:
        """Counts the connection; False (and closed) when it is one over a limit."""
        address = self.client[0] if self.client else ""
        limited = not self._is_unlimited(address)
        if len(self.connections) > self._limits.max_connections or (
            limited and self._per_address.get(address, 0) >= self._limits.max_per_address
        ):
            self.transport.abort()
            return False
        if limited:
            self._counted = address
            self._per_address[address] = self._per_address.get(address, 0) + 1
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._early = None
        self._stop_waiting()
        self._uncount()
        super().connection_lost(exc)

    def _uncount(self) -> None:
        if self._counted is not None:
            left = self._per_address.pop(self._counted) - 1
            if left:
                self._per_address[self._counted] = left
            self._counted = None

    def _is_unlimited(self, address: str) -> bool:
        if not self._unlimited:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._unlimited)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size = self._head_raw = self._not_body = 0
        self._in_head = True
        self._receiving = True
        if self._deadline is None:  # begun while an earlier one is answered: its time from here
            self._await_request()

    def on_message_complete(self) -> None:
        self._receiving = False
        upgrade = self.parser.should_upgrade() and self._should_upgrade()
        super().on_message_complete()
        if upgrade or not self._idle():
            self._stop_waiting()  # the whole request is in: the app takes it from here
        else:
            self._await_request()  # its answer came first: the next request's time starts now

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._receiving:
            return  # the rest of a request is still coming, within the time it had
        if self._idle():
            self._await_request()

    def handle_websocket_upgrade(self) -> None:
        # The connection is the WebSocket protocol's from here (kiok's servers run with
        # ``ws="none"``, so this is for completeness): no deadline, and no longer counted.
        self._stop_waiting()
        self._uncount()
        super().handle_websocket_upgrade()

    def _idle(self) -> bool:
        """No request is being answered or waits its turn (the connection is open)."""
        answering = self.cycle is not None and not self.cycle.response_complete
        return not (answering or self.pipeline or self.transport.is_closing())

    def _await_request(self) -> None:
        self._stop_waiting()
        self._deadline = self.loop.call_later(self._limits.request_timeout_s, self._timed_out)

    def _stop_waiting(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._early is not None:  # still in its TLS handshake: nothing is owed to the peer
            self.transport.abort()
            return
        owed = self.pipeline or (
            self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete
        )
        if self._receiving and not owed:
            self.transport.write(_TIMED_OUT)
        self.transport.close()


__all__ = ["MAX_HEADER_BYTES", "HttpLimits", "limited_protocol"]
