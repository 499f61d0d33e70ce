"""A worker whose connection broke is lost (its runs reassigned) the heartbeat timeout after
it was last heard from, even if it came back for a moment in between without being welcomed.

Before, a reconnection cancelled the lost timer and registered itself as the worker's
connection before its WELCOME was written. When that write failed (the worker died, or its
network went, right then), nothing undid it: the worker was never lost, and every run it
drove stalled until it came back — forever, for a machine that is gone."""

from __future__ import annotations

import asyncio
from typing import Any

from kiok.config import Settings
from kiok.master.internal_server import InternalServer
from kiok.protocol.codec import encode
from kiok.protocol.framing import encode_frame
from kiok.protocol.to_master import Hello


class Coordinator:
    term = 1

    def __init__(self) -> None:
        self.lost: list[str] = []
        self.added: list[str] = []

    def reattach(self, worker_id: str, claims: tuple[Any, ...]) -> tuple[Any, ...]:
        return ()

    def add_worker(self, handle: Any) -> None:
        self.added.append(handle.worker_id)

    def worker_lost(self, worker_id: str) -> None:
        self.lost.append(worker_id)


class Admission:
    def verify(self, worker_id: str, credential: str) -> None:
        pass


class Node:
    def __init__(self) -> None:
        self.settings = Settings.load(
            env={},
            overrides={"kiok.worker.heartbeat.interval.ms": 100, "kiok.worker.heartbeat.timeout.ms": 300},
        )
        self.revoke_hooks: list[Any] = []
        self.demotion_hooks: list[Any] = []
        self.raft = None
        self.keyring = None
        self.node_id = "m1"
        self.coordinator = Coordinator()
        self.admission = Admission()

    def clock_ms(self) -> int:
        return 1_000


class Writer:
    """The server's side of a connection; ``broken``: every write fails (the peer is gone)."""

    def __init__(self, broken: bool) -> None:
        self.broken = broken

    def write(self, data: bytes) -> None:
        if self.broken:
            raise ConnectionResetError("connection reset by peer")

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str) -> Any:
        return ("10.0.0.7", 40000)


def hello_stream() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    hello = encode(Hello("w1", (), 2, credential="secret"))
    reader.feed_data(encode_frame(hello))
    reader.feed_eof()  # the connection ends after the hello (and the welcome, if any)
    return reader


async def test_a_reconnection_that_is_never_welcomed_does_not_keep_the_worker() -> None:
    node = Node()
    server = InternalServer(node)  # type: ignore[arg-type]
    await server._handle(hello_stream(), Writer(broken=False))  # type: ignore[arg-type]
    assert node.coordinator.added == ["w1"]  # welcomed; then its connection ended
    await server._handle(hello_stream(), Writer(broken=True))  # type: ignore[arg-type]
    await asyncio.sleep(0.5)  # past the heartbeat timeout since it was last heard from
    assert node.coordinator.lost == ["w1"]
