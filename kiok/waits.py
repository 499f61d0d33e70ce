"""Waiting for at most a while: on an ``asyncio.Event`` in the loops that sleep between passes
(the scheduler's tick, a notifier's retry, a worker's back-off, a driver's next wake-up), and
on reads, writes and answers with a deadline (``within``).

``asyncio.wait_for(event.wait(), t)`` is what those loops used. On Python 3.11 it can swallow
a cancellation that arrives as the event is set (gh-86296, fixed in 3.12 by reimplementing it
over ``asyncio.timeout``): the loop then goes round again instead of ending, and whatever waits
for it to end (a shutdown gathering its tasks) waits for good. ``asyncio.timeout`` passes the
cancellation on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

_T = TypeVar("_T")


async def wait_set(event: asyncio.Event, timeout_s: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout_s`` has passed (None: no limit); whether it is
    set. A cancellation always propagates."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


async def within(awaitable: Awaitable[_T], timeout_s: float | None) -> _T:
    """``await awaitable``, or ``TimeoutError`` after ``timeout_s`` (None: no limit), as
    ``asyncio.wait_for`` but passing every cancellation on (a read loop whose read completes
    as it is cancelled must end, not read on)."""
    async with asyncio.timeout(timeout_s):
        return await awaitable
