"""Waiting on an ``asyncio.Event`` for at most a while, in the loops that sleep between passes
(the scheduler's tick, a notifier's retry, a worker's back-off, a driver's next wake-up).

``asyncio.wait_for(event.wait(), t)`` is what those loops used. On Python 3.11 it can swallow
a cancellation that arrives as the event is set (gh-86296, fixed in 3.12 by reimplementing it
over ``asyncio.timeout``): the loop then goes round again instead of ending, and whatever waits
for it to end (a shutdown gathering its tasks) waits for good. ``asyncio.timeout`` passes the
cancellation on.
"""

from __future__ import annotations

import asyncio


async def wait_set(event: asyncio.Event, timeout_s: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout_s`` has passed (None: no limit); whether it is
    set. A cancellation always propagates."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
