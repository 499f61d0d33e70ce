"""A worker's global task permits: one granted just as its attempt is cancelled is given
back, and those its running attempts hold are named in each hello (a new leader, a reconnect).

The read loop handles the frames of one read without yielding: an ABANDON of a run (or a
fenced acknowledgement) followed by the PERMIT_GRANT its waiting attempt asked for cancels
the attempt (``RunDriver.abandon``) after the grant resolved its wait. The attempt then left
``acquire_task_permit`` cancelled, neither counting the permit nor freeing it: the master kept
it for the life of the connection, and a worker that lost enough of them ran no more tasks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kiok.protocol.codec import encode
from kiok.protocol.framing import encode_frame
from kiok.protocol.messages import Claim, Fence, Message
from kiok.protocol.to_master import Permit, PermitFree
from kiok.protocol.to_worker import Abandon, PermitGrant
from tests.master_clients import master_client

pytestmark = pytest.mark.asyncio


class Worker:
    """What ``Worker.abandon`` does to a run's attempts: a task that cancels them at once."""

    def __init__(self) -> None:
        self.attempt: asyncio.Task[None] | None = None

    def abandon(self, run_id: str, reason: str, fence: Fence | None = None) -> None:
        async def retire() -> None:
            assert self.attempt is not None
            self.attempt.cancel()

        asyncio.get_running_loop().create_task(retire())


async def test_a_permit_granted_as_its_attempt_is_abandoned_is_given_back(tmp_path: Path) -> None:
    client = master_client(tmp_path)
    worker = Worker()
    client.attach(worker)  # type: ignore[arg-type]
    sent: asyncio.Queue[Message] = asyncio.Queue()
    client._out = sent  # type: ignore[assignment]  # what would go to the master
    client._connected.set()

    async def attempt() -> None:  # RunDriver._attempt's use of the link
        await client.acquire_task_permit()
        try:
            await asyncio.Event().wait()
        finally:
            client.release_task_permit()

    worker.attempt = asyncio.get_running_loop().create_task(attempt())
    await asyncio.sleep(0)
    asked = sent.get_nowait()
    assert isinstance(asked, Permit)
    frames = asyncio.StreamReader()
    frames.feed_data(
        encode_frame(encode(Abandon.of((Claim("r1", Fence(1, 5)),))))
        + encode_frame(encode(PermitGrant(request=asked.request)))
    )
    frames.feed_eof()
    with pytest.raises(ConnectionError):
        await client._read_loop(frames)
    await asyncio.gather(worker.attempt, return_exceptions=True)
    assert worker.attempt.cancelled()
    given_back = [m for m in (sent.get_nowait() for _ in range(sent.qsize())) if isinstance(m, PermitFree)]
    assert len(given_back) == 1


class Running:
    """A worker whose attempts run on: what the hello reads of it."""

    labels = ("gpu",)
    total_slots = 4
    task_isolation = "user+pidns"

    def abandon(self, run_id: str, reason: str, fence: Fence | None = None) -> None:
        raise AssertionError("nothing is abandoned here")

    def report_all(self) -> None:
        pass


async def test_the_permits_of_running_attempts_are_named_in_the_next_hello(tmp_path: Path) -> None:
    """They were counted from 0 on every new connection, so a new leader (which counts from
    its hellos) granted past ``kiok.scheduler.max.global.concurrency`` as long as they ran."""
    client = master_client(tmp_path)
    client.attach(Running())  # type: ignore[arg-type]
    client._claims = lambda: ()  # type: ignore[method-assign]
    first: asyncio.Queue[Message] = asyncio.Queue()
    client._out = first  # type: ignore[assignment]
    client._connected.set()
    loop = asyncio.get_running_loop()
    attempts = [loop.create_task(client.acquire_task_permit()) for _ in range(2)]
    await asyncio.sleep(0)
    frames = asyncio.StreamReader()
    for _ in attempts:
        asked = first.get_nowait()
        assert isinstance(asked, Permit)
        frames.feed_data(encode_frame(encode(PermitGrant(request=asked.request))))
    frames.feed_eof()
    with pytest.raises(ConnectionError):
        await client._read_loop(frames)
    await asyncio.gather(*attempts)
    assert client._hello().permits == 2  # the connection breaks; the next hello says so

    client._out = asyncio.Queue()  # type: ignore[assignment]  # the next connection
    client.release_task_permit()
    assert client._hello().permits == 1
