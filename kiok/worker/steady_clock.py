"""The clock a worker's drivers read: wall-clock milliseconds that never step.

A driver times retries (``retryAt`` in a task record is a wall-clock instant, because another
driver may resume the run) and stamps what it reports with this clock. Read raw, a step of
the host's wall clock (NTP correcting a bad start, a VM resumed after hours) would stretch a
pending retry by the size of a backward step — a run stalled for an hour — or fire it early.
Anchored once on the wall clock and advanced by the monotonic clock, the worker's time follows
the wall clock's rate (the kernel slews both alike) but not its steps; a restarted worker
re-anchors on the corrected wall clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SteadyWallClock:
    def __init__(
        self,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self._mono = monotonic_s
        self._wall0 = wall_ms()
        self._mono0 = monotonic_s()

    def __call__(self) -> int:
        return self._wall0 + int((self._mono() - self._mono0) * 1000)
