"""``TaskSlots``: a worker's task slots, shared by the drivers of its runs.

Why not an ``asyncio.Semaphore`` with one waiting asyncio task per queued task: a run that
queues 500 tasks at once then creates 500 asyncio tasks, 492 of them only to wait, before
the first process starts (~3 ms here, during which the other core idles). Instead each
driver keeps its own queue and takes slots only for tasks it can start now; a driver that
finds none free waits in line, once, and a freed slot goes to the first driver in line.
A driver that still has tasks queued after taking its slot goes to the back of the line,
so runs sharing a worker take slots in turn rather than the first run's whole queue first.
"""

from __future__ import annotations

from collections.abc import Callable


class TaskSlots:
    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"a worker needs at least one task slot, not {total}")
        self.total = total
        self._free = total
        #: Drivers waiting for a slot, in order: each one's "a slot came free" callback.
        self._line: dict[Callable[[], None], None] = {}

    @property
    def free(self) -> int:
        return self._free

    @property
    def busy(self) -> int:
        return self.total - self._free

    def try_take(self) -> bool:
        """Take a slot if one is free."""
        if self._free:
            self._free -= 1
            return True
        return False

    def release(self) -> None:
        """Give a slot back; the drivers in line are called, first come first, while slots
        are free (a called driver takes what it can use, and lines up again if it still
        has tasks queued)."""
        if self._free >= self.total:
            raise RuntimeError("a task slot was released that was never taken")
        self._free += 1
        while self._free and self._line:
            callback = next(iter(self._line))
            del self._line[callback]
            callback()

    def wait(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when a slot comes free (once; waiting twice keeps one place)."""
        self._line.setdefault(callback, None)

    def leave(self, callback: Callable[[], None]) -> None:
        """Stop waiting (a driver that ended or was abandoned)."""
        self._line.pop(callback, None)


__all__ = ["TaskSlots"]
