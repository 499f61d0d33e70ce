"""A write Raft did not commit: a 503 ``not_leader`` that a client may send again
(``Retry-After``) only when the write certainly did not take effect. After a leader change
the next leader may still commit it, and a trigger sent again would start a second run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from pysyncobj import FAIL_REASON

from kiok.master import http_errors
from kiok.master.api.forward import ForwardToLeader
from kiok.store.replicated import _not_committed


@pytest.mark.parametrize(
    ("reason", "retried"),
    [
        (FAIL_REASON.MISSING_LEADER, True),
        (FAIL_REASON.NOT_LEADER, True),
        (FAIL_REASON.DISCARDED, True),
        (FAIL_REASON.QUEUE_FULL, True),
        (FAIL_REASON.LEADER_CHANGED, False),
        (FAIL_REASON.REQUEST_DENIED, False),  # not one kiok expects: its fate is not known
    ],
)
async def test_only_a_write_that_surely_did_not_commit_is_offered_a_retry(reason: int, retried: bool) -> None:
    app = FastAPI()
    http_errors.install(app)

    @app.post("/write")
    async def write() -> None:
        raise _not_committed(reason)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as client:
        answer = await client.post("/write")
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "not_leader"
    assert (answer.headers.get("retry-after") == "1") is retried
    if not retried:
        assert "check before repeating" in answer.json()["error"]["message"]


async def _no_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A leader that takes the forwarded request and dies before answering."""
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


@pytest.mark.parametrize(
    ("leader", "method", "path", "retried"),
    [
        ("refuses", "POST", "/api/v1/dags/d/runs", True),
        ("takes_it_and_dies", "POST", "/api/v1/dags/d/runs", False),
        ("takes_it_and_dies", "GET", "/api/v1/cluster", True),  # a read changes nothing
    ],
)
async def test_a_follower_offers_a_retry_only_when_the_leader_never_got_the_write(
    leader: str, method: str, path: str, retried: bool
) -> None:
    server = await asyncio.start_server(_no_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    if leader == "refuses":
        server.close()
        await server.wait_closed()
    node = SimpleNamespace(
        raft=SimpleNamespace(leader_id="m1", is_leader=False),
        leadership=SimpleNamespace(leading=False, leader_admin_url=lambda: f"http://127.0.0.1:{port}"),
        settings=SimpleNamespace(get_str=lambda key: ""),
        node_id="m2",
        forward_token="service",
        tracing=SimpleNamespace(current_traceparent=lambda: None),
    )
    app = FastAPI()
    forwarding = ForwardToLeader(app, node, timeout_s=5)  # type: ignore[arg-type]
    try:
        transport = httpx.ASGITransport(app=forwarding)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://m2") as client:
            answer = await client.request(method, path)
    finally:
        server.close()
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "not_leader"
    if retried:
        assert answer.headers["retry-after"] == "1"
    else:
        assert "retry-after" not in answer.headers
        assert "check before repeating" in answer.json()["error"]["message"]


def _frozen(
    thawed: asyncio.Event, closed: asyncio.Event
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A leader that took the request and stopped: it reads and answers nothing until
    ``thawed``, then closes its side (``closed``): no connection outlives the test's loop."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(1 << 16)
            await thawed.wait()
        finally:
            writer.close()
            await writer.wait_closed()
            closed.set()

    return serve


async def test_a_write_forwarded_to_a_leader_that_stops_leading_is_given_up_at_once() -> None:
    """The leader took the request and froze; another was elected: the follower answered
    only at its forward timeout (30 s by default). Now it gives up as soon as it sees
    another leader (or none), as a write that may still take effect."""
    thawed, closed = asyncio.Event(), asyncio.Event()
    server = await asyncio.start_server(_frozen(thawed, closed), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    raft = SimpleNamespace(leader_id="m1", is_leader=False)
    node = SimpleNamespace(
        raft=raft,
        leadership=SimpleNamespace(leading=False, leader_admin_url=lambda: f"http://127.0.0.1:{port}"),
        settings=SimpleNamespace(get_str=lambda key: ""),
        node_id="m2",
        forward_token="service",
        tracing=SimpleNamespace(current_traceparent=lambda: None),
    )
    forwarding = ForwardToLeader(FastAPI(), node, timeout_s=60)  # type: ignore[arg-type]
    asyncio.get_running_loop().call_later(0.3, setattr, raft, "leader_id", "m3")
    try:
        transport = httpx.ASGITransport(app=forwarding)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://m2") as client:
            answer = await asyncio.wait_for(client.post("/api/v1/dags/d/runs"), 10)
    finally:
        thawed.set()
        server.close()
        await server.wait_closed()
        if forwarding._http is not None:
            await forwarding._http.aclose()
        await asyncio.wait_for(closed.wait(), 5)
    assert answer.status_code == 503 and "retry-after" not in answer.headers, answer.text
    assert "it stopped leading while the request was under way" in answer.json()["error"]["message"]
