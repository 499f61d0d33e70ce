"""The HTTP protocol of kiok's ports (admin API, worker status): uvicorn's (httptools), with
the two limits it lacks.

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
  from taking every connection (the health probes' and the masters' own forwarded writes).
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


@dataclass(frozen=True)
class HttpLimits:
    request_timeout_s: float = 60.0
    max_connections: int = 512
    max_per_address: int = 256
    #: Networks not limited per address: reverse proxies, which carry many clients.
    unlimited: tuple[str, ...] = ()


def limited_protocol(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """uvicorn's protocol class with ``limits`` (uvicorn makes one instance per connection;
    the count per address is the server's, held by this class)."""

    class Limited(_LimitedProtocol):
        _limits = limits
        _unlimited = tuple(ipaddress.ip_network(n, strict=False) for n in limits.unlimited)
        _per_address: ClassVar[dict[str, int]] = {}

    return Limited


class _LimitedProtocol(HttpToolsProtocol):
    """The deadline runs while the connection waits on its client: from the connection or
    the last answer until a request is in whole, and while the rest of a request is still
    coming (even after its answer, which may come first). It does not run while every
    request in is being answered (or waits its turn, pipelined)."""

    _limits = HttpLimits()
    _unlimited: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    #: Connections open per client address, on this protocol's server (``limited_protocol``).
    _per_address: ClassVar[dict[str, int]] = {}
    _deadline: asyncio.TimerHandle | None = None
    #: Part of a request has come, not all of it (a 408 says why it is closed).
    _receiving = False
    #: The address this connection is counted under (None: not counted).
    _counted: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else ""
        limited = not self._is_unlimited(address)
        if len(self.connections) > self._limits.max_connections or (
            limited and self._per_address.get(address, 0) >= self._limits.max_per_address
        ):
            transport.abort()
            return
        if limited:
            self._counted = address
            self._per_address[address] = self._per_address.get(address, 0) + 1
        self._await_request()

    def connection_lost(self, exc: Exception | None) -> None:
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
        owed = self.pipeline or (
            self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete
        )
        if self._receiving and not owed:
            self.transport.write(_TIMED_OUT)
        self.transport.close()


__all__ = ["HttpLimits", "limited_protocol"]
