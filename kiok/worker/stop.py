"""``StopSignal``: how a driver tells one running attempt to stop (cancel, abandon)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class StopSignal:
    """Set once; callbacks and waiters then learn of it. A callback costs a list entry,
    where an ``asyncio.Event`` needs a task per attempt to turn its ``wait()`` into one."""

    def __init__(self) -> None:
        self._set = False
        self._callbacks: list[Callable[[], None]] = []

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if not self._set:
            self._set = True
            callbacks, self._callbacks = self._callbacks, []
            for callback in callbacks:
                callback()

    def on_set(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when set (now, if it is); returns what cancels that."""
        if self._set:
            callback()
            return _nothing
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    async def wait(self) -> None:
        if self._set:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        cancel = self.on_set(lambda: None if fut.done() else fut.set_result(None))
        try:
            await fut
        finally:
            cancel()


def _nothing() -> None:
    pass
