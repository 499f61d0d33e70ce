"""The simulator's network: byte streams between named hosts, with faults.

A connection is a pair of ``asyncio.StreamReader``s fed after a latency drawn from the
world's random source, in order per direction (as TCP delivers). Faults act as a real
network would show them to kiok: ``cut`` resets every connection of a host (bytes in flight
are lost, both ends see the reset), ``isolate`` makes a host unreachable (connects fail,
nothing is delivered either way), ``stall`` holds a host's traffic without dropping it,
like a process that was SIGSTOPped: the peer's read deadline expires meanwhile, and ``lag``
holds only the connections a host has open now (a slow network path) while new ones work.

``lag`` is how messages reach kiok lost, duplicated and out of order on a network that
keeps each TCP stream in order: the worker gives up on the slow connection, reconnects and
sends again what was not acknowledged; then the slow connection delivers its frames late,
after (and as well as) the new connection's, and acknowledgements sent on it are lost."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

Handler = Callable[[asyncio.StreamReader, Any], Awaitable[None]]


class Network(Protocol):
    """What the simulated hosts use to reach each other: ``SimNet`` (in memory, every
    fault) and ``kiok.testing.sim.tcpnet.TcpNet`` (real sockets, resets only)."""

    def listen(self, host: str, handler: Handler) -> None: ...
    def unlisten(self, host: str) -> None: ...
    async def connect(self, src: str, host: str) -> tuple[asyncio.StreamReader, Any]: ...
    def cut(self, host: str) -> None: ...
    def isolate(self, host: str) -> None: ...
    def heal(self, host: str) -> None: ...
    def stall(self, host: str) -> None: ...
    def resume(self, host: str) -> None: ...
    def stalled(self, host: str) -> bool: ...
    def lag(self, host: str) -> None: ...
    def unlag(self, host: str) -> None: ...


class _Conn:
    def __init__(self, net: SimNet, a: str, b: str) -> None:
        self.net = net
        self.hosts = (a, b)
        self.alive = True
        self.readers = (asyncio.StreamReader(limit=2**26), asyncio.StreamReader(limit=2**26))
        self._next_at = [0.0, 0.0]
        self.held: list[tuple[int, bytes | None]] = []
        self.lagging = False

    def send(self, side: int, data: bytes | None) -> None:
        """Bytes (or, for None, the end of stream) from ``side`` to the other side."""
        if not self.alive:
            return
        if self.lagging or any(self.net.stalled(h) for h in self.hosts):
            self.held.append((side, data))
            return
        loop = asyncio.get_running_loop()
        at = max(loop.time() + self.net.latency(), self._next_at[side] + 1e-6)  # in order
        self._next_at[side] = at
        loop.call_at(at, self._deliver, side, data)

    def _deliver(self, side: int, data: bytes | None) -> None:
        if not self.alive:
            return
        reader = self.readers[1 - side]
        if data is None:
            reader.feed_eof()
        else:
            reader.feed_data(data)

    def release(self) -> None:
        held, self.held = self.held, []
        for side, data in held:
            self.send(side, data)

    def reset(self) -> None:
        if self.alive:
            self.alive = False
            for reader in self.readers:
                if not reader.at_eof():
                    reader.set_exception(ConnectionResetError("connection reset (simulated)"))


class _Writer:
    """The ``StreamWriter`` surface kiok uses, over one side of a ``_Conn``."""

    def __init__(self, conn: _Conn, side: int) -> None:
        self._conn = conn
        self._side = side
        self._closed = False

    def write(self, data: bytes) -> None:
        if not self._closed:
            self._conn.send(self._side, bytes(data))

    async def drain(self) -> None:
        if not self._conn.alive:
            raise ConnectionResetError("connection reset (simulated)")
        await asyncio.sleep(0)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._conn.send(self._side, None)

    def is_closing(self) -> bool:
        return self._closed or not self._conn.alive

    async def wait_closed(self) -> None:
        return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return (self._conn.hosts[1 - self._side], 40000 + self._side)
        return default


class SimNet:
    def __init__(self, rng: random.Random, latency_ms: tuple[float, float] = (0.2, 3.0)) -> None:
        self._rng = rng
        self._latency = latency_ms
        self._listeners: dict[str, Handler] = {}
        self._conns: list[_Conn] = []
        self._isolated: set[str] = set()
        self._stalled: set[str] = set()

    def latency(self) -> float:
        return self._rng.uniform(*self._latency) / 1000

    def listen(self, host: str, handler: Handler) -> None:
        self._listeners[host] = handler

    def unlisten(self, host: str) -> None:
        self._listeners.pop(host, None)
        self.cut(host)

    def stalled(self, host: str) -> bool:
        return host in self._stalled

    async def connect(self, src: str, host: str) -> tuple[asyncio.StreamReader, Any]:
        await asyncio.sleep(self.latency())
        handler = self._listeners.get(host)
        if handler is None or src in self._isolated or host in self._isolated or src in self._stalled:
            raise ConnectionRefusedError(f"{host} is unreachable from {src} (simulated)")
        conn = _Conn(self, src, host)
        self._conns = [c for c in self._conns if c.alive]
        self._conns.append(conn)
        server_side = asyncio.ensure_future(handler(conn.readers[1], _Writer(conn, 1)))
        server_side.add_done_callback(_retrieve)
        return conn.readers[0], _Writer(conn, 0)

    def cut(self, host: str) -> None:
        for conn in self._conns:
            if host in conn.hosts:
                conn.reset()

    def isolate(self, host: str) -> None:
        self._isolated.add(host)
        self.cut(host)

    def heal(self, host: str) -> None:
        self._isolated.discard(host)

    def stall(self, host: str) -> None:
        self._stalled.add(host)

    def resume(self, host: str) -> None:
        self._stalled.discard(host)
        for conn in self._conns:
            if host in conn.hosts:
                conn.release()

    def lag(self, host: str) -> None:
        for conn in self._conns:
            if conn.alive and host in conn.hosts:
                conn.lagging = True

    def unlag(self, host: str) -> None:
        """The slow connections deliver what they held, late."""
        for conn in self._conns:
            if conn.lagging and host in conn.hosts:
                conn.lagging = False
                conn.release()


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
