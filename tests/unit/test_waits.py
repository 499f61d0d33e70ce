"""``wait_set`` ends on the event or the timeout, and never swallows a cancellation — not
even one that arrives as the event is set, which ``asyncio.wait_for`` on Python 3.11 could
lose (gh-86296), leaving a loop that should end going round again."""

from __future__ import annotations

import asyncio

import pytest

from kiok.waits import wait_set


async def test_it_ends_on_the_event_or_the_timeout() -> None:
    event = asyncio.Event()
    assert await wait_set(event, 0.01) is False
    asyncio.get_running_loop().call_soon(event.set)
    assert await wait_set(event, 5) is True
    assert await wait_set(event, None) is True


async def test_a_cancellation_racing_the_event_is_never_lost() -> None:
    for _ in range(200):
        event = asyncio.Event()
        task = asyncio.create_task(wait_set(event, 10))
        await asyncio.sleep(0)  # it waits now
        event.set()
        task.cancel()  # in the same turn as the event: the race wait_for lost
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_within_times_out_and_never_loses_a_cancellation() -> None:
    from kiok.waits import within

    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        await within(loop.create_future(), 0.01)
    done: asyncio.Future[int] = loop.create_future()
    done.set_result(3)
    assert await within(done, 1) == 3
    for _ in range(200):
        answer: asyncio.Future[int] = loop.create_future()
        task = asyncio.create_task(within(answer, 10))
        await asyncio.sleep(0)
        answer.set_result(1)  # a read completing...
        task.cancel()  # ...as its loop is cancelled: wait_for returned the read
        with pytest.raises(asyncio.CancelledError):
            await task
