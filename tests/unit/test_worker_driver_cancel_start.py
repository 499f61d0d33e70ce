"""A cancel that arrives while an attempt's start is being confirmed: the masters stored the
task CANCELLED (the cancel committed first), so the start they acknowledge is a stale one.
The attempt must not run: before, its process was spawned with the stop already set (a
shell body ran until its SIGTERM, an http task could send its request)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kiok.ids import RUN_LOG_TASK
from kiok.protocol.messages import Fence
from kiok.worker.slots import TaskSlots
from tests.unit.test_worker_driver_slots import HeldExecutor, QuietLink, driver, env


class CancelDuringStart(QuietLink):
    """Confirms each start only after the run's cancel reached the driver."""

    def __init__(self) -> None:
        self.on_start: list[Any] = []
        self.reports: list[dict[str, dict[str, Any]]] = []

    def report_tasks(self, run_id: str, fence: Fence, tasks: dict[str, dict[str, Any]]) -> None:
        self.reports.append(tasks)

    async def confirm_start(self, run_id: str, fence: Fence, task_id: str, record: dict[str, Any]) -> bool:
        for hook in self.on_start:
            hook()
        await asyncio.sleep(0)
        return True


async def test_an_attempt_cancelled_while_its_start_is_confirmed_never_runs(tmp_path: Path) -> None:
    executor = HeldExecutor()
    link = CancelDuringStart()
    denv = env(tmp_path, executor, TaskSlots(2))
    denv.link = link
    d = driver("r", ["t1"], denv)
    link.on_start.append(lambda: d.cancel("cancelled by alice: the run was cancelled"))
    walk = asyncio.create_task(d.drive())
    await asyncio.wait({walk}, timeout=1)
    started = list(executor.started)
    for key in started:  # (the stand-in executor ignores stops: let it end)
        executor.finish(key)
    assert started == []
    state = await asyncio.wait_for(walk, 5)
    await asyncio.sleep(0.01)  # the last report's linger
    assert state.value == "CANCELLED"
    final = [tasks["t1"] for tasks in link.reports if "t1" in tasks][-1]
    assert final["state"] == "CANCELLED" and final["attempt"] == 1


class RunLogLink(QuietLink):
    """Keeps what the driver writes to the run log (``__run__``)."""

    def __init__(self) -> None:
        self.run_log = bytearray()

    def append_log(
        self, run_id: str, fence: Fence, task_id: str, data: bytes, *, offset: int, final: bool
    ) -> None:
        if task_id == RUN_LOG_TASK:
            self.run_log += data


async def test_the_run_log_says_what_a_cancel_stops_not_that_it_was_asked(tmp_path: Path) -> None:
    """The masters write ``cancel requested by <user>`` to the run log: the driver's own line
    says what it does (the running tasks it stops), not the request again."""
    executor = HeldExecutor()
    link = RunLogLink()
    denv = env(tmp_path, executor, TaskSlots(2))
    denv.link = link
    d = driver("r", ["t1", "t2", "t3"], denv)
    walk = asyncio.create_task(d.drive())
    await executor.wait_started(2)  # t3 waits for a slot
    d.cancel("cancelled by alice: the run was cancelled")
    for key in list(executor.started):  # (the stand-in executor ignores stops: let it end)
        executor.finish(key)
    state = await asyncio.wait_for(walk, 5)
    assert state.value == "CANCELLED"
    lines = link.run_log.decode().splitlines()
    assert not any("cancel requested" in line for line in lines), lines
    assert any(line.endswith(" stopping 2 running tasks; no other task starts") for line in lines), lines
