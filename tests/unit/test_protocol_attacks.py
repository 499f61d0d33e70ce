"""The internal protocol (port 19999) under attack: what a peer can make the
master spend or show, and two faults of liveness. Each test is an attack or a fault that
worked before its fix.

- A frame within the size limit could be a msgpack bomb: one byte per empty map (a ~64-byte
  Python object), three per extension object. A 16 MiB frame from an admitted worker built
  1.2 GB and held the master's event loop for ~6 s (every other worker, the Raft links and
  the admin port waited meanwhile).
- Connections that never say hello each kept a file descriptor of the master (shared with
  its store and its other ports) until the hello deadline, with no bound on how many: anyone
  who reaches the port could exhaust them. And with TLS, a connection that never starts its
  handshake was kept for asyncio's default of 60 s whatever the hello deadline said.
- A PERMIT_FREE for a permit never held still kicked the coordinator (a dispatch pass over
  every unfinished run per dozen bytes received).
- The reason of a worker's NAK went verbatim into the log and waiting reason of a run it
  never held: newlines forged whole log lines, 64 KiB a refusal.
- A worker never left a master that went silent without closing the connection (frozen, its
  host gone): masters now answer heartbeats and a worker leaves one silent too long.
- A worker holding more runs than fit in a 64 KiB hello could never reconnect: the hello now
  names those that fit and the first heartbeat names them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest

from kiok.config import Settings
from kiok.dag.load import spec_from_yaml
from kiok.errors import ProtocolError
from kiok.master import internal_server
from kiok.master.internal_server import GlobalPermits, InternalServer, WorkerConnection
from kiok.protocol.codec import decode, encode, kind_of
from kiok.protocol.framing import (
    DEFAULT_MAX_FRAME_BYTES,
    decode_body,
    encode_frame,
    read_frame,
)
from kiok.protocol.kinds import Kind
from kiok.protocol.messages import Assignment, Fence, OfferReply, OfferVerdict
from kiok.protocol.to_master import KEEPALIVE, Hello, Permit, PermitFree
from kiok.protocol.to_worker import Offer, OutboxKeys, Welcome
from kiok.security.kms import Keyring
from kiok.testing.tls import TestCA
from kiok.worker.master_client import MasterClient
from tests.master_clients import StubWorker, master_client
from tests.unit.test_internal_server_lost_timer import Node

# --- msgpack bombs --------------------------------------------------------------------------


def _heartbeat_with(extra: bytes, count: int) -> bytes:
    """A heartbeat whose unknown field ``x`` is an array of ``count`` copies of ``extra``
    (unknown fields are ignored by the codec, so only the decode itself can refuse it)."""
    head = msgpack.packb({"v": 1, "t": "heartbeat", "id": 0, "free": 1})
    assert isinstance(head, bytes)
    # Same map with one more entry: patch the fixmap size, then append "x": [...].
    body = bytes([head[0] + 1]) + head[1:] + b"\xa1x" + b"\xdd" + struct.pack(">I", count) + extra * count
    assert len(body) <= DEFAULT_MAX_FRAME_BYTES
    return body


def _reader(body: bytes) -> asyncio.StreamReader:
    r = asyncio.StreamReader(limit=2**26)
    r.feed_data(struct.pack(">I", len(body)) + body)
    r.feed_eof()
    return r


async def test_a_frame_of_millions_of_empty_maps_is_refused() -> None:
    # 2 M empty maps: 2 MiB on the wire, ~150 MB and ~1 s of event loop to build before.
    with pytest.raises(ProtocolError, match="maps and lists"):
        await read_frame(_reader(_heartbeat_with(b"\x80", 2_000_000)), timeout_s=10)


async def test_a_frame_of_millions_of_empty_lists_is_refused() -> None:
    with pytest.raises(ProtocolError, match="maps and lists"):
        await read_frame(_reader(_heartbeat_with(b"\x90", 2_000_000)), timeout_s=10)


async def test_extension_types_are_refused() -> None:
    # fixext1: 3 bytes each, a Python object of ~100 bytes; the protocol never sends one.
    with pytest.raises(ProtocolError, match="extension"):
        await read_frame(_reader(_heartbeat_with(b"\xd4\x01\x00", 10)), timeout_s=10)


def test_msgpack_timestamps_decode_as_plain_numbers() -> None:
    # Timestamps (extension -1) are decoded by msgpack itself, not by an ext hook: a float,
    # not an object costlier than its 6 bytes, and refused wherever a field wants an int.
    body = _heartbeat_with(b"\xd6\xff\x00\x00\x00\x01", 3)
    assert decode_body(body)["x"] == [1.0, 1.0, 1.0]
    head = msgpack.packb({"v": 1, "t": "heartbeat", "id": 0})
    assert isinstance(head, bytes)
    with pytest.raises(ProtocolError, match="free"):
        decode(decode_body(bytes([head[0] + 1]) + head[1:] + b"\xa4free\xd6\xff\x00\x00\x00\x01"))


async def test_a_real_offer_decodes_under_the_budget_of_its_own_size() -> None:
    # The budget must never refuse a real frame. Tasks with dependencies and a record each
    # (the densest real frame: many small maps) hold one map or list per ~26 bytes, so even
    # a limit set to the frame's own size takes it (the default limit allows 16x more).
    n = 10_000
    source = "dag:\n  id: big\ntasks:\n" + "".join(
        f"  - {{id: t{i}, type: shell, script: x, requires: [t{i - 1}]}}\n"
        if i
        else "  - {id: t0, type: shell, script: x}\n"
        for i in range(n)
    )
    spec = spec_from_yaml(source).to_dict()
    records = {f"t{i}": {"state": "SUCCESS", "attempt": 1} for i in range(n)}
    offer = Offer(Assignment("big-1-1", "big", spec, {}, Fence(1, 1), records, 1), request=1)
    frame = encode_frame(encode(offer))
    raw = await read_frame(_reader(frame[4:]), timeout_s=10, max_frame_bytes=len(frame))
    assert raw is not None
    decoded = decode(raw)
    assert isinstance(decoded, Offer) and len(decoded.assignment.tasks) == n


# --- connections that never say hello -------------------------------------------------------


class PatientNode(Node):
    """The stub master of ``test_internal_server_lost_timer`` with a long hello deadline: a
    connection closed within the test was closed for room, not by its deadline."""

    def __init__(self, connect_timeout_ms: int) -> None:
        super().__init__()
        self.settings = Settings.load(
            env={},
            overrides={
                "kiok.worker.heartbeat.interval.ms": 100,
                "kiok.worker.heartbeat.timeout.ms": 300,
                "kiok.internal.connect.timeout.ms": connect_timeout_ms,
            },
        )
        # What a welcomed worker's heartbeats tell the coordinator: nothing to do here.
        self.coordinator.claims_seen = lambda worker_id, runs: None  # type: ignore[attr-defined]
        self.coordinator.capacity_freed = lambda worker_id: None  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def serving(node: Node, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """An ``InternalServer`` over ``node`` on a free port; on exit, its connections end
    before the loop does (each handler is awaited, none is left to be cancelled)."""
    server = InternalServer(node)  # type: ignore[arg-type]
    handlers: set[asyncio.Task[Any]] = set()
    handle = server._handle

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        await handle(reader, writer)

    server._handle = tracked  # type: ignore[method-assign]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)
    await server.start(sock, ssl_context)
    try:
        yield sock.getsockname()[1]
    finally:
        await server.stop()
        for conn in list(server.connections.values()):
            conn.close("the test is over")
        if handlers:
            await asyncio.wait(handlers, timeout=15)


def _server_tls(tmp_path: Path) -> ssl.SSLContext:
    ca = TestCA(tmp_path / "ca")
    leaf = ca.issue("master")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(leaf.cert, leaf.key)
    return ctx


async def test_silent_connections_cannot_hold_the_masters_file_descriptors() -> None:
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    async with serving(PatientNode(connect_timeout_ms=120_000)) as port:
        try:
            for _ in range(getattr(internal_server, "MAX_AWAITING_HELLO", 256) + 20):
                opened.append(await asyncio.open_connection("127.0.0.1", port))
            # The oldest silent connection is closed for room, long before its hello deadline.
            assert await asyncio.wait_for(opened[0][0].read(), 15) == b""
            # A worker that says hello at once is still welcomed.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            opened.append((reader, writer))
            writer.write(encode_frame(encode(Hello("w1", (), 2, credential="secret"))))
            reply = await read_frame(reader, timeout_s=15)
            assert reply is not None and reply["t"] == "welcome", reply
        finally:
            for _, w in opened:
                w.close()


async def test_a_tls_connection_that_never_shakes_hands_is_closed_at_the_hello_deadline(
    tmp_path: Path,
) -> None:
    async with serving(PatientNode(connect_timeout_ms=500), _server_tls(tmp_path)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # plain TCP: no ClientHello
        try:
            # Closed by the 0.5 s hello deadline, not asyncio's 60 s handshake default.
            assert await asyncio.wait_for(reader.read(), 15) == b""
        finally:
            writer.close()


# --- a master that goes silent without closing ----------------------------------------------


_StubWorker = StubWorker


async def _silent_master(tmp_path: Path, *, keepalive: bool, heartbeats_before_check: int) -> int:
    """A master that welcomes one worker (answering heartbeats if ``keepalive``, it says)
    and then says nothing, its connection open, as a stopped process whose kernel still
    takes the heartbeats: how many connections the worker made by the time the first one
    carried ``heartbeats_before_check`` heartbeats, or a second connection came."""
    connections = 0
    done = asyncio.get_running_loop().create_future()
    held: list[asyncio.StreamWriter] = []

    handlers: list[asyncio.Task[Any]] = []

    async def silent_master(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        if connections > 1:
            if not done.done():
                done.set_result(None)
            writer.close()
            return
        hello = Hello.from_wire(await read_frame(reader, timeout_s=10) or {})
        assert KEEPALIVE in hello.capabilities
        keys = OutboxKeys(1, ((1, b"\x01" * 32),))
        writer.write(encode_frame(encode(Welcome("w1", 1, 100, 500, keys, keepalive=keepalive))))
        held.append(writer)
        heartbeats = 0
        with contextlib.suppress(ConnectionError, ProtocolError):
            while (raw := await read_frame(reader, timeout_s=10)) is not None:
                heartbeats += kind_of(raw) is Kind.HEARTBEAT
                if heartbeats >= heartbeats_before_check and not done.done():
                    done.set_result(None)

    server = await asyncio.start_server(silent_master, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    (tmp_path / "credential").write_text("w1.secret\n")
    client = _client([("127.0.0.1", port)], tmp_path)
    client.attach(_StubWorker())  # type: ignore[arg-type]
    running = asyncio.create_task(client.run())
    try:
        await asyncio.wait_for(client._connected.wait(), 5)  # welcomed
        await asyncio.wait_for(done, 10)
        return connections
    finally:
        await client.stop()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        for w in held:
            w.close()
        server.close()
        await asyncio.wait_for(asyncio.gather(*handlers), 5)  # their connections are closed


async def test_a_worker_leaves_a_master_that_went_silent(tmp_path: Path) -> None:
    """A leader that froze (SIGSTOP, a hung host) or went dark without a FIN (power loss, a
    partition: until TCP gives up, ~15 min) kept every worker connected to it, reading with
    a day's deadline, so none reached the new leader. A master that answers heartbeats and
    stops answering for its heartbeat timeout (0.5 s here) is left for another."""
    assert await _silent_master(tmp_path, keepalive=True, heartbeats_before_check=1000) == 2


async def test_a_worker_stays_with_a_master_that_does_not_answer_heartbeats(tmp_path: Path) -> None:
    """An older master (no ``keepalive`` in its WELCOME) is silent when it has nothing to
    say: the worker stays with it for many heartbeat timeouts (15 heartbeats of 0.1 s)."""
    assert await _silent_master(tmp_path, keepalive=False, heartbeats_before_check=15) == 1


def _client(masters: list[tuple[str, int]], tmp_path: Path) -> MasterClient:
    return master_client(tmp_path, masters)


def test_a_master_left_for_its_silence_comes_after_the_others(tmp_path: Path) -> None:
    """It may still accept connections (its kernel does) and never answer: for a while the
    worker tries every other master first, unless one of them names it the leader (its path
    was only slow: a frozen leader is replaced within the heartbeat timeout)."""
    masters = [("m1", 1), ("m2", 2), ("m3", 3)]
    client = _client(masters, tmp_path)
    order = itertools.cycle(masters)
    assert next(order) == ("m1", 1)  # m1 was tried, then m2 welcomed it and went silent
    client._avoid = (("m2", 2), time.monotonic() + 30)
    assert [client._next_master(order) for _ in range(4)] == [("m3", 3), ("m1", 1), ("m3", 3), ("m1", 1)]
    client._redirect = ("m2", 2)  # "does not lead; leader: m2"
    assert client._next_master(order) == ("m2", 2)
    assert client._next_master(order) == ("m3", 3)
    client._avoid = (("m2", 2), time.monotonic() - 1)  # the while is over
    assert client._next_master(order) == ("m1", 1) and client._next_master(order) == ("m2", 2)
    alone = _client([("m1", 1)], tmp_path)
    alone._avoid = (("m1", 1), time.monotonic() + 30)
    assert alone._next_master(itertools.cycle([("m1", 1)])) == ("m1", 1)


# --- frames that free nothing kick nothing --------------------------------------------------


async def test_a_permit_free_for_no_permit_held_does_not_kick_the_coordinator() -> None:
    # Each kick may cost a dispatch pass over every unfinished run: a worker sending PERMIT_FREE
    # (a dozen bytes) for permits it never held made the master run passes back to back.
    kicks: list[str] = []
    node = SimpleNamespace(
        clock_ms=lambda: 0,
        coordinator=SimpleNamespace(capacity_freed=kicks.append, claims_seen=lambda w, runs: None),
    )
    server = SimpleNamespace(node=node, permits=GlobalPermits(10))
    conn = WorkerConnection(server, None, None, "w1", "127.0.0.1:1", (), 2)  # type: ignore[arg-type]
    for _ in range(1000):
        conn._dispatch(encode(PermitFree()))
    assert kicks == []
    assert conn._permits_held == 0
    # A permit it does hold still frees its slot and kicks, once.
    conn._dispatch(encode(Permit(request=1)))
    for _ in range(5):
        await asyncio.sleep(0)
    assert conn._permits_held == 1
    conn._dispatch(encode(PermitFree()))
    conn._dispatch(encode(PermitFree()))
    assert kicks == ["w1"] and conn._permits_held == 0


# --- a worker that holds many runs ----------------------------------------------------------


class _BusyWorker(_StubWorker):
    """A worker holding 2,000 runs: a backfill whose first task failed and waits an hour
    for its retry holds no task slot, so one worker is offered (and takes) every run."""

    def report_all(self) -> None:
        pass

    def claims(self) -> list[dict[str, object]]:
        return [
            {"run": f"customer_orders_daily-1733480000000-{100_000 + i}", "term": 3, "epoch": 1_000_000 + i}
            for i in range(2000)
        ]


async def test_a_worker_holding_many_runs_can_reconnect(tmp_path: Path) -> None:
    """A hello is read before authentication, so it stays small (64 KiB), but it named every
    run the worker held: past ~700-1,400 runs (by run id length) the worker was closed at
    every hello and could never reconnect. It names those that fit; its first heartbeat names
    them all, and only then does it take its runs back and join the coordinator's workers
    (offered nothing, and holding its runs as a worker cut off does, in between)."""
    node = PatientNode(connect_timeout_ms=10_000)
    node.keyring = Keyring.generate()  # type: ignore[assignment]
    seen: list[tuple[int, list[str]]] = []
    joined = asyncio.Event()

    def reattach(worker_id: str, claims: tuple[Any, ...]) -> tuple[Any, ...]:
        seen.append((len(claims), list(node.coordinator.added)))
        joined.set()
        return ()

    node.coordinator.reattach = reattach  # type: ignore[method-assign]
    async with serving(node) as port:
        (tmp_path / "credential").write_text("w1.secret\n")
        client = _client([("127.0.0.1", port)], tmp_path)
        client.attach(_BusyWorker())  # type: ignore[arg-type]
        running = asyncio.create_task(client.run())
        try:
            await asyncio.wait_for(joined.wait(), 5)
            # Taken back once, with all 2,000 (from the first heartbeat), before it joined.
            assert seen == [(2000, [])] and node.coordinator.added == ["w1"]
        finally:
            await client.stop()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


async def test_a_worker_over_tls_is_still_welcomed(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    leaf = ca.issue("master")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(leaf.cert, leaf.key)
    client_ctx = ssl.create_default_context(cafile=str(ca.cert))
    async with serving(PatientNode(connect_timeout_ms=5000), server_ctx) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
        try:
            writer.write(encode_frame(encode(Hello("w1", (), 2, credential="secret"))))
            reply = await read_frame(reader, timeout_s=15)
            assert reply is not None and reply["t"] == "welcome", reply
        finally:
            writer.close()


# --- what a worker says about a run it does not hold ----------------------------------------


async def test_an_offer_refusal_cannot_write_lines_into_the_runs_log() -> None:
    # The reason of a NAK goes into the run's log ("worker w1 refused the run: <reason>") and
    # its waiting reason, for a run the worker never held: any pending run it is offered. A
    # reason with newlines forged whole lines there, 64 KiB of them per refusal.
    node = SimpleNamespace(clock_ms=lambda: 0)
    server = SimpleNamespace(node=node, permits=GlobalPermits(10), offer_timeout_s=30)
    conn = WorkerConnection(server, None, None, "w1", "127.0.0.1:1", (), 2)  # type: ignore[arg-type]
    assignment = Assignment("d-1-1", "d", {"dag": {"id": "d"}, "tasks": []}, {}, Fence(1, 1), {}, 1)
    offered = asyncio.ensure_future(conn.offer(assignment, ()))
    for _ in range(3):
        await asyncio.sleep(0)  # the offer is out (request id 1)
    forged = "busy\n2026-12-06T10:00:00.000Z run finished SUCCESS\n" + "x" * 60_000
    conn._dispatch(encode(OfferReply(OfferVerdict.NAK, forged, request=1)))
    reply = await asyncio.wait_for(offered, 5)
    assert reply.verdict is OfferVerdict.NAK
    assert reply.reason.startswith("busy 2026-12-06T10:00:00.000Z run finished SUCCESS")
    assert "\n" not in reply.reason and len(reply.reason) <= 200
