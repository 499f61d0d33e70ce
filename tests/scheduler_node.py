"""A master node on a real RocksDB store with a manual clock, for the scheduler's tests (in
process: no HTTP, no worker): ``tests/integration/test_scheduler.py`` and the scheduling audit."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from kiok.config import Settings
from kiok.master.node import MasterNode


class Clock:
    """The node's clock: epoch ms, set by the test."""

    def __init__(self, value: int) -> None:
        self.ms = value

    def __call__(self) -> int:
        return self.ms


def ms(text: str) -> int:
    """Epoch ms of an ISO time (with its offset)."""
    return int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)


@contextlib.asynccontextmanager
async def scheduler_node(tmp_path: Path) -> AsyncIterator[tuple[MasterNode, Clock]]:
    """A bootstrapped node at 2026-03-28T12:00Z, catch-up capped at 24 runs."""
    clock = Clock(ms("2026-03-28T12:00:00+00:00"))
    settings = Settings.load(
        overrides={"kiok.base.data.dir": str(tmp_path), "kiok.scheduler.catchup.max.runs": 24}
    )
    n = MasterNode(settings, clock)
    await n.open_stores()
    await n.auth.bootstrap("admin", "Some-Password-1")
    try:
        yield n, clock
    finally:
        n.kv.close()
        n.joblog.close()
