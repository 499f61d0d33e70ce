"""An asyncio event loop on virtual time: when nothing is ready, time jumps to the next timer.

Everything kiok does waits on asyncio timers and futures (heartbeats, read deadlines,
lingers, retry delays, the coordinator's grace), so a whole cluster runs in one such loop
with no real waiting: an hour of faults takes seconds, and the schedule depends only on the
order of callbacks, which the seed decides. Nothing here may block on a real thread or
socket; the loop's selector is never waited on."""

from __future__ import annotations

import asyncio
import selectors
from typing import Any


class Stuck(RuntimeError):
    """Nothing is ready and no timer is set: the simulated world can never move again."""


class _NoWaitSelector(selectors.BaseSelector):
    """Keeps registrations (the loop's self-pipe) but never waits: a wait of ``timeout`` is
    a jump of the virtual clock."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop
        self._keys: dict[Any, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._keys[fd] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        return self._keys.pop(fd)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise Stuck("nothing is scheduled: the simulation can never move again")
        self._loop.advance(timeout)
        return []

    def get_map(self) -> Any:
        return self._keys

    def close(self) -> None:
        self._keys.clear()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(_NoWaitSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)
