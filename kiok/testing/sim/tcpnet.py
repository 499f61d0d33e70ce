"""The simulator's network over real TCP on 127.0.0.1: the same ``listen``/``connect``/
``cut`` surface as ``SimNet``, so one world can run over kiok's real sockets (in real time)
and over the in-memory network (on virtual time), and the link contract tests check that
both give the same outcome. Only the faults TCP can show on one machine are offered."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any

from kiok.testing.sim.net import Handler


class TcpNet:
    def __init__(self) -> None:
        self._ports: dict[str, int] = {}
        self._servers: dict[str, asyncio.Server] = {}
        self._writers: dict[str, list[asyncio.StreamWriter]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def listen(self, host: str, handler: Handler) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", self._ports.get(host, 0)))
        sock.listen(64)
        self._ports[host] = sock.getsockname()[1]

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.setdefault(host, []).append(writer)
            # Cancelled at shutdown: end quietly (asyncio's server callback would otherwise
            # report the cancellation as an error).
            with contextlib.suppress(asyncio.CancelledError):
                await handler(reader, writer)

        async def serve() -> None:
            self._servers[host] = await asyncio.start_server(accept, sock=sock)

        task = asyncio.get_running_loop().create_task(serve())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def unlisten(self, host: str) -> None:
        server = self._servers.pop(host, None)
        if server is not None:
            server.close()
        self.cut(host)

    async def connect(self, src: str, host: str) -> tuple[asyncio.StreamReader, Any]:
        port = self._ports.get(host)
        if port is None or host not in self._servers:
            raise ConnectionRefusedError(f"{host} is not listening")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self._writers.setdefault(src, []).append(writer)
        return reader, writer

    def cut(self, host: str) -> None:
        """Reset every connection of ``host`` (an RST, as a crashed peer or a middlebox)."""
        for writer in self._writers.pop(host, []):
            if writer.transport.is_closing():
                continue
            sock = writer.get_extra_info("socket")
            with contextlib.suppress(OSError):
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

    def isolate(self, host: str) -> None:
        self.cut(host)

    def heal(self, host: str) -> None:
        return None

    def stalled(self, host: str) -> bool:
        return False

    def stall(self, host: str) -> None:
        raise NotImplementedError("a stall needs the in-memory network")

    def resume(self, host: str) -> None:
        raise NotImplementedError("a stall needs the in-memory network")

    def lag(self, host: str) -> None:
        raise NotImplementedError("a lagging connection needs the in-memory network")

    def unlag(self, host: str) -> None:
        raise NotImplementedError("a lagging connection needs the in-memory network")
