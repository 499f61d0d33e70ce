"""What one admitted worker's connection may take on the master (``kiok.master.internal_server``):
its heartbeats cannot claim more room than its slots, its PERMIT requests cannot drain the
cluster-wide concurrency cap from other workers nor pile up without bound, and nothing it sends
after it was revoked counts. Fake node and streams: only the connection's own logic runs."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from kiok.errors import ProtocolError
from kiok.master.internal_server import GlobalPermits, WorkerConnection
from kiok.protocol.codec import encode
from kiok.protocol.messages import Fence
from kiok.protocol.to_master import Heartbeat, Permit, PermitFree, Report


class FakeIntake:
    def __init__(self) -> None:
        self.reports: list[Report] = []

    def report(self, worker: str, msg: Report, *, durable: bool) -> asyncio.Future[Any]:
        self.reports.append(msg)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        return fut


def connection(
    slots: int, global_limit: int = 100, permits: int = 0, server: Any = None
) -> tuple[WorkerConnection, Any]:
    node = SimpleNamespace(
        clock_ms=lambda: 0,
        coordinator=SimpleNamespace(capacity_freed=lambda w: None, claims_seen=lambda w, runs: None),
        intake=FakeIntake(),
    )
    server = server or SimpleNamespace(node=node, permits=GlobalPermits(global_limit))
    conn = WorkerConnection(server, None, None, "w1", "127.0.0.1:1", (), slots, permits)  # type: ignore[arg-type]
    return conn, server


def sent(conn: WorkerConnection) -> list[Any]:
    out = []
    while not conn._out.empty():
        out.append(conn._out.get_nowait())
    return out


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_heartbeat_claims_no_more_free_slots_than_the_hello_declared() -> None:
    conn, _ = connection(slots=4)
    conn._dispatch(encode(Heartbeat(free=1_000_000)))
    assert conn.info().free == 4
    conn._dispatch(encode(Heartbeat(free=-5)))
    assert conn.info().free == 0


async def test_a_permit_flood_takes_no_more_of_the_global_cap_than_the_workers_slots() -> None:
    conn, server = connection(slots=2, global_limit=10)
    for i in range(1, 9):
        conn._dispatch(encode(Permit(request=i)))
    await settle()
    assert conn._permits_held == 2
    assert len([m for m in sent(conn) if m is not None]) == 2  # two grants
    # Eight permits are left for other workers.
    for _ in range(8):
        await asyncio.wait_for(server.permits.acquire(), 1)
    # A freed permit goes to this worker's next waiting request, within its slots still.
    server.permits.release(8)
    conn._dispatch(encode(PermitFree()))
    await settle()
    assert conn._permits_held == 2
    for t in list(conn._tasks):
        t.cancel()


async def test_unbounded_permit_requests_close_the_connection() -> None:
    conn, _ = connection(slots=1, global_limit=1)
    with pytest.raises(ProtocolError):
        for i in range(1, 10_000):
            conn._dispatch(encode(Permit(request=i)))
    assert len(conn._tasks) < 100
    for t in list(conn._tasks):
        t.cancel()


async def test_nothing_a_revoked_worker_sends_counts() -> None:
    conn, server = connection(slots=2)
    conn.close("worker w1 was revoked")
    conn._dispatch(encode(Report("r1", Fence(1, 1), {"t1": {"state": "SUCCESS", "attempt": 1}}, request=3)))
    conn._dispatch(encode(Permit(request=4)))
    await settle()
    assert server.node.intake.reports == []
    assert conn._permits_held == 0


async def test_a_flood_of_fenced_reports_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    conn, server = connection(slots=2)
    futures: list[asyncio.Future[Any]] = []

    def report(worker: str, msg: Report, *, durable: bool) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        futures.append(fut)
        return fut

    server.node.intake.report = report
    server.node.reader = SimpleNamespace(run_header=lambda run_id: {"runId": run_id})
    noted: list[str] = []
    server.node.run_log = lambda run_id, line: noted.append(line)
    for i in range(1, 201):
        conn._dispatch(encode(Report("r-other", Fence(1, 1), {"t1": {"state": "SUCCESS"}}, request=i)))
    for fut in futures:
        fut.set_result({"accepted": 0, "stale": 1, "fenced": True})
    await settle()
    acks = [m for m in sent(conn) if m is not None]
    assert len(acks) == 200 and all(m.fenced for m in acks)  # each refused...
    assert len([r for r in caplog.records if "r-other" in r.getMessage()]) == 1  # ...said once
    assert len(noted) == 1


async def test_permits_a_reconnecting_worker_holds_count_against_the_cap_at_once() -> None:
    """After a failover (or a reconnect) the master counted the permits of attempts already
    running from 0: with a cap of 2 and two such attempts, two more started at once."""
    held, server = connection(slots=4, global_limit=2, permits=2)  # its hello: 2 running
    other, _ = connection(slots=4, server=server)
    other._dispatch(encode(Permit(request=1)))
    await settle()
    assert other._permits_held == 0 and sent(other) == []  # waits: the cap is taken
    held._dispatch(encode(PermitFree()))  # one of the running attempts ends
    await settle()
    assert other._permits_held == 1
    held.give_back_permits()  # the first worker's connection goes: its other permit is free
    assert server.permits.used == 1
    for t in [*held._tasks, *other._tasks]:
        t.cancel()


async def test_permits_taken_past_the_cap_are_given_out_again_only_below_it() -> None:
    permits = GlobalPermits(2)
    permits.adopt(3)
    waiter = asyncio.get_running_loop().create_task(permits.acquire())
    cancelled = asyncio.get_running_loop().create_task(permits.acquire())
    await settle()
    cancelled.cancel()
    permits.release()  # 2 in use: still at the cap
    await settle()
    assert not waiter.done() and permits.used == 2
    permits.release()
    await settle()
    assert waiter.done() and permits.used == 2  # the cancelled one took nothing
