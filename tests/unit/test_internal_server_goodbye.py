"""A worker that shuts down says goodbye (a HEARTBEAT ``leaving``, holding no run) before it
closes its connection: the master drops it at once. Before, it was kept (as draining) until
the heartbeat timeout, and a run it gave back waited "every matching worker is draining"."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from kiok.errors import ProtocolError
from kiok.master.internal_server import InternalServer
from kiok.protocol.codec import encode, kind_of
from kiok.protocol.framing import encode_frame, read_frame
from kiok.protocol.kinds import Kind
from kiok.protocol.to_master import Heartbeat, Hello
from kiok.protocol.to_worker import OutboxKeys, Welcome
from tests.master_clients import StubWorker, master_client
from tests.unit.test_internal_server_lost_timer import Coordinator, Writer
from tests.unit.test_internal_server_lost_timer import Node as BaseNode


class Claims(Coordinator):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[set[str]] = []

    def claims_seen(self, worker_id: str, held: set[str]) -> None:
        self.seen.append(held)

    def capacity_freed(self, worker_id: str) -> None:
        pass


class Node(BaseNode):
    def __init__(self) -> None:
        super().__init__()
        self.coordinator: Claims = Claims()


def _stream(*frames: object) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    for frame in (Hello("w1", (), 2, credential="secret"), *frames):
        reader.feed_data(encode_frame(encode(frame)))  # type: ignore[arg-type]
    reader.feed_eof()
    return reader


async def test_a_worker_that_said_goodbye_is_dropped_at_once() -> None:
    node = Node()  # heartbeat timeout 300 ms
    server = InternalServer(node)  # type: ignore[arg-type]
    await server._handle(_stream(Heartbeat(2, True, (), leaving=True)), Writer(broken=False))  # type: ignore[arg-type]
    assert node.coordinator.added == ["w1"] and node.coordinator.seen == [set()]  # read as a heartbeat
    assert node.coordinator.lost == ["w1"] and "w1" not in server.connections  # no wait


async def test_a_worker_gone_without_a_goodbye_is_kept_for_the_heartbeat_timeout() -> None:
    node = Node()
    server = InternalServer(node)  # type: ignore[arg-type]
    await server._handle(_stream(Heartbeat(2, True, ())), Writer(broken=False))  # type: ignore[arg-type]
    assert node.coordinator.lost == [] and "w1" in server.connections  # it may come back
    await asyncio.sleep(0.5)
    assert node.coordinator.lost == ["w1"]


def test_the_goodbye_on_the_wire() -> None:
    assert "leaving" not in Heartbeat(2, True, ()).to_wire()  # the frame older masters know
    assert Heartbeat.from_wire(Heartbeat(2, True, (), leaving=True).to_wire()).leaving


async def _last_heartbeat_at_stop(tmp_path: Path, worker: StubWorker) -> Heartbeat | None:
    """A master that welcomes the worker and keeps every HEARTBEAT; the worker stops: the
    last heartbeat the master read before the connection closed."""
    seen: list[Heartbeat] = []
    closed = asyncio.get_running_loop().create_future()

    async def master(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frame(reader, timeout_s=10)  # the hello
        keys = OutboxKeys(1, ((1, b"\x01" * 32),))
        writer.write(encode_frame(encode(Welcome("w1", 1, 60_000, 120_000, keys))))
        with contextlib.suppress(ConnectionError, ProtocolError):
            while (raw := await read_frame(reader, timeout_s=10)) is not None:
                if kind_of(raw) is Kind.HEARTBEAT:
                    seen.append(Heartbeat.from_wire(raw))
        writer.close()
        closed.set_result(None)

    server = await asyncio.start_server(master, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    (tmp_path / "credential").write_text("w1.secret\n")
    client = master_client(tmp_path, [("127.0.0.1", port)], heartbeat_interval_s=60)
    client.attach(worker)  # type: ignore[arg-type]
    running = asyncio.create_task(client.run())
    try:
        await asyncio.wait_for(client._connected.wait(), 5)
        await client.stop()
        await asyncio.wait_for(closed, 5)
        await asyncio.wait_for(running, 5)
    finally:
        server.close()
    return seen[-1] if seen else None


async def test_a_worker_stopping_with_no_run_says_goodbye(tmp_path: Path) -> None:
    last = await _last_heartbeat_at_stop(tmp_path, StubWorker())
    assert last is not None and last.leaving and last.draining and last.runs == ()


async def test_a_worker_stopping_with_a_run_still_held_says_no_goodbye(tmp_path: Path) -> None:
    class Holding(StubWorker):
        def report_all(self) -> None:
            pass

        def claims(self) -> list[dict[str, object]]:
            return [{"run": "r1", "term": 1, "epoch": 1}]

    last = await _last_heartbeat_at_stop(tmp_path, Holding())
    assert last is None or not last.leaving  # kept for the heartbeat timeout, as before
