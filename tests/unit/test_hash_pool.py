"""The password-hash pool sheds load: a distributed flood of logins (many addresses, many
user names, so no back-off applies) must not queue hashes without bound. Past
``kiok.auth.password.hash.queue.max`` waiting callers a caller is refused at once with
``Overloaded`` (503 with ``Retry-After``), a cancelled caller frees its place, and a refused
login is not counted as a failed one."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from kiok.errors import Overloaded
from kiok.master import http_errors
from kiok.master.auth import AuthService
from kiok.security import passwords
from kiok.security.passwords import HashPool
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader


class BlockedHashes:
    """Stands in for argon2: every hash blocks its thread until ``release``."""

    def __init__(self) -> None:
        self.started = 0
        self._lock = threading.Lock()
        self._go = threading.Event()

    def hash(self, password: str) -> str:
        self._wait()
        return f"h:{password}"

    def verify(self, password_hash: str, password: str) -> bool:
        self._wait()
        return password_hash == f"h:{password}"

    def _wait(self) -> None:
        with self._lock:
            self.started += 1
        assert self._go.wait(10)

    def release(self) -> None:
        self._go.set()

    async def until_started(self, n: int) -> None:
        deadline = time.monotonic() + 10
        while self.started < n and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # the loop keeps turning while the hashes block their threads
        assert self.started == n


@pytest.fixture
def blocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[BlockedHashes]:
    hashes = BlockedHashes()
    monkeypatch.setattr(passwords, "hash_password", hashes.hash)
    monkeypatch.setattr(passwords, "verify_password", hashes.verify)
    yield hashes
    hashes.release()  # no thread is left blocked, whatever the test did


async def test_a_caller_past_the_queue_bound_is_refused_at_once(blocked: BlockedHashes) -> None:
    pool = HashPool(1, queue_max=2)
    try:
        admitted = [asyncio.create_task(pool.hash(f"p{i}")) for i in range(3)]  # 1 hashing, 2 waiting
        await blocked.until_started(1)
        started = time.monotonic()
        with pytest.raises(Overloaded) as refused:
            await pool.verify("h:p3", "p3")
        assert time.monotonic() - started < 1  # at once, not after the queue drained
        assert refused.value.code == "overloaded" and refused.value.retry_after_s >= 1
        assert "kiok.auth.password.hash.queue.max" in refused.value.message
        assert not any(t.done() for t in admitted)
        blocked.release()
        assert await asyncio.gather(*admitted) == ["h:p0", "h:p1", "h:p2"]
        assert await pool.verify("h:p4", "p4")  # room again once the queue drained
    finally:
        pool.close()


async def test_a_caller_cancelled_while_waiting_frees_its_place(blocked: BlockedHashes) -> None:
    pool = HashPool(1, queue_max=1)
    try:
        running = asyncio.create_task(pool.hash("a"))
        await blocked.until_started(1)
        waiting = asyncio.create_task(pool.hash("b"))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await pool.hash("c")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        later = asyncio.create_task(pool.hash("d"))  # takes the place the cancelled one left
        await asyncio.sleep(0)
        blocked.release()
        assert await running == "h:a" and await later == "h:d"
        assert blocked.started == 2  # the cancelled caller never cost a hash
    finally:
        pool.close()


async def test_a_caller_cancelled_while_hashing_keeps_its_slot_until_the_hash_ends(
    blocked: BlockedHashes,
) -> None:
    """The thread goes on hashing (argon2 cannot be stopped): giving its slot away would let
    a client that disconnects at once start more than ``concurrency`` hashes."""
    pool = HashPool(1, queue_max=0)
    try:
        running = asyncio.create_task(pool.hash("a"))
        await blocked.until_started(1)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        with pytest.raises(Overloaded):
            await pool.hash("b")
        blocked.release()
        deadline = time.monotonic() + 10
        while True:
            try:
                assert await pool.hash("c") == "h:c"
                break
            except Overloaded:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
    finally:
        pool.close()


async def test_a_caller_that_must_not_be_shed_waits_past_the_bound(blocked: BlockedHashes) -> None:
    pool = HashPool(1, queue_max=0)
    try:
        running = asyncio.create_task(pool.hash("a"))
        await blocked.until_started(1)
        bootstrap = asyncio.create_task(pool.hash("admin", shed=False))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await pool.hash("b")
        blocked.release()
        assert await running == "h:a" and await bootstrap == "h:admin"
    finally:
        pool.close()


def _auth(log: LocalCommandLog, kv: MemoryKV) -> AuthService:
    return AuthService(
        log,
        StateReader(kv),
        lambda: 1_700_000_000_000,
        access_ttl_ms=60_000,
        refresh_ttl_ms=600_000,
        max_failures=2,
        window_ms=60_000,
        hash_concurrency=1,
        hash_queue_max=0,
    )


async def test_a_shed_login_is_refused_with_overloaded_and_not_counted_as_failed(
    blocked: BlockedHashes,
) -> None:
    kv = MemoryKV(keys.SPACES)
    log = LocalCommandLog(kv)
    auth = _auth(log, kv)
    try:
        boot = c.Bootstrap(
            at_ms=1,
            admin_user="admin",
            password_hash="h:Admin-Password-1",
            require_password_change=False,
            signing_key=b"k" * 32,
        )
        await log.propose(boot)
        flood = asyncio.create_task(auth.login("nobody", "guess", "203.0.113.9"))  # takes the one slot
        await blocked.until_started(1)
        for _ in range(3):  # more than max_failures: a refusal is no failed login
            with pytest.raises(Overloaded):
                await auth.login("admin", "Admin-Password-1", "198.51.100.7")
        blocked.release()
        with pytest.raises(Exception, match="wrong user or password"):
            await flood
        pair = await auth.login("admin", "Admin-Password-1", "198.51.100.7")
        assert not pair.password_change_required
    finally:
        auth.hashes.close()


async def test_overloaded_is_a_503_with_retry_after() -> None:
    app = FastAPI()
    http_errors.install(app)

    @app.post("/login")
    async def login() -> None:
        raise Overloaded("too many password checks waiting", retry_after_s=2)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as client:
        answer = await client.post("/login")
    assert answer.status_code == 503
    assert answer.json()["error"] == {"code": "overloaded", "message": "too many password checks waiting"}
    assert answer.headers["retry-after"] == "2"
