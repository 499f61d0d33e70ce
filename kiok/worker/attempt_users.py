"""Which attempt user each isolated attempt runs as: the worker's side of
``kiok.worker.attempt_ids``.

One user per running attempt, and back to the pool only once the spawner has reported the
attempt's end (its processes are gone by then), not when whoever awaited it stops waiting:
a cancelled attempt may still be dying, and another attempt as its user could reach it.
Users are taken in turn, so the one handed out has been idle the longest.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class AttemptUser:
    name: str
    uid: int


class AttemptUsers:
    def __init__(self, users: Sequence[tuple[str, int]]) -> None:
        self._free = deque(AttemptUser(name, uid) for name, uid in users)
        self._waiting: deque[asyncio.Future[AttemptUser]] = deque()

    async def take(self) -> AttemptUser:
        """A free user, waiting for one when all are taken (fewer users than slots, or
        attempts still dying after their callers gave up on them): handed over in turn."""
        if self._free:
            return self._free.popleft()
        waiter: asyncio.Future[AttemptUser] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give_back(waiter.result())  # handed over just as it was cancelled
            raise

    def give_back(self, user: AttemptUser) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(user)
                return
        self._free.append(user)


__all__ = ["AttemptUser", "AttemptUsers"]
