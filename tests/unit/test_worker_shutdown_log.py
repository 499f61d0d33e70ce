"""An attempt stopped because its worker shuts down (drain timeout, or a second Ctrl-C) ends
its task log with a line saying so; one stopped because the run moved to another driver does
not claim a shutdown. In-memory executor and link; the real driver and worker."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from kiok.core.interruption import SHUTDOWN_REASON
from kiok.protocol.messages import Fence
from kiok.worker.slots import TaskSlots
from kiok.worker.worker import Worker
from tests.unit.test_worker_driver_slots import HeldExecutor, QuietLink, driver, env


class LogLink(QuietLink):
    def __init__(self) -> None:
        self.logs: dict[str, bytes] = {}
        self.released: list[str] = []

    def append_log(
        self, run_id: str, fence: Fence, task_id: str, data: bytes, *, offset: int, final: bool
    ) -> None:
        self.logs[task_id] = self.logs.get(task_id, b"") + data

    def release_run(self, run_id: str, fence: Fence, reason: str) -> None:
        self.released.append(reason)


def _worker(tmp_path: Path, executor: HeldExecutor) -> tuple[Worker, LogLink]:
    link = LogLink()
    return Worker(replace(env(tmp_path, executor, TaskSlots(2)), link=link), slots=2), link


async def test_an_attempt_stopped_at_shutdown_says_so_in_its_log(tmp_path: Path) -> None:
    executor = HeldExecutor()
    worker, link = _worker(tmp_path, executor)
    run = driver("r", ["t1"], worker.env)
    worker.offer(run.assignment)
    await executor.wait_started(1)
    assert await worker.drain(0.05) is False  # the drain timeout passes: the run is given back
    log = link.logs["t1"].decode()
    assert log.endswith(
        "[kiok] attempt 1 stopped by its worker, which is shutting down; process group stopped "
        "(SIGTERM, then SIGKILL after 1s)\n"
    ), log
    assert link.released == [SHUTDOWN_REASON]


async def test_an_attempt_abandoned_otherwise_claims_no_shutdown(tmp_path: Path) -> None:
    executor = HeldExecutor()
    worker, link = _worker(tmp_path, executor)
    run = driver("r", ["t1"], worker.env)
    worker.offer(run.assignment)
    await executor.wait_started(1)
    worker.abandon("r", "the master gave the run to another driver")
    async with asyncio.timeout(5):
        while worker._background:  # the retiring driver stops the attempt
            await asyncio.sleep(0.01)
    assert b"shutting down" not in link.logs.get("t1", b"")


async def test_a_run_the_worker_cannot_drive_is_refused_not_left_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The security re-probe (session 27) made building a run's driver fail (a connection
    value the masker could not encode): the offer raised, and the run stayed assigned to a
    worker with no driver for it, RUNNING for ever. A driver that cannot be built is a NAK."""
    from kiok.protocol.messages import OfferVerdict
    from kiok.worker import worker as worker_module

    worker, _ = _worker(tmp_path, HeldExecutor())
    run = driver("r", ["t1"], worker.env)

    def broken(*_: object) -> None:
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")

    monkeypatch.setattr(worker_module, "RunDriver", broken)
    reply = worker.offer(run.assignment)
    assert reply.verdict is OfferVerdict.NAK and "cannot drive the run: UnicodeEncodeError" in reply.reason, (
        reply
    )
    assert worker.active_runs == []
