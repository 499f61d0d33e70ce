"""Drivers sharing a worker's slots: runs take them in turn, and a driver whose walk ended
starts nothing more. The executor and the link are in-memory stand-ins; the drivers, the
frontier and the slots are the real ones."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kiok.dag.load import spec_from_yaml
from kiok.dag.spec import TaskType
from kiok.protocol.messages import Assignment, Fence
from kiok.worker.driver import DriverEnv, RunDriver
from kiok.worker.executors.base import AttemptContext, AttemptResult
from kiok.worker.process import WorkDirs
from kiok.worker.slots import TaskSlots


class HeldExecutor:
    """Each attempt runs until the test lets it end."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []
        self._release: dict[tuple[str, str], asyncio.Event] = {}
        self.changed = asyncio.Event()

    async def run(self, ctx: AttemptContext) -> AttemptResult:
        key = (ctx.run_id, ctx.task.id)
        self.started.append(key)
        self._release[key] = asyncio.Event()
        self.changed.set()
        await self._release[key].wait()
        return AttemptResult(True, exit_code=0)

    def finish(self, key: tuple[str, str]) -> None:
        self._release[key].set()

    async def wait_started(self, n: int) -> None:
        async with asyncio.timeout(5):
            while len(self.started) < n:
                self.changed.clear()
                await self.changed.wait()


class QuietLink:
    starts_in_reports = False
    may_be_cut_off = False

    def report_tasks(self, run_id: str, fence: Fence, tasks: dict[str, dict[str, Any]]) -> None:
        pass

    def append_log(
        self, run_id: str, fence: Fence, task_id: str, data: bytes, *, offset: int, final: bool
    ) -> None:
        pass

    def release_run(self, run_id: str, fence: Fence, reason: str) -> None:
        pass

    async def confirm_start(self, run_id: str, fence: Fence, task_id: str, record: dict[str, Any]) -> bool:
        return True

    async def acquire_task_permit(self) -> None:
        pass

    def release_task_permit(self) -> None:
        pass


def env(tmp_path: Path, executor: HeldExecutor, slots: TaskSlots) -> DriverEnv:
    return DriverEnv(
        worker_id="w1",
        link=QuietLink(),
        slots=slots,
        executors={TaskType.SHELL: executor},
        work_dirs=WorkDirs(tmp_path),
        default_timeout_ms=60_000,
        retry_cap_ms=60_000,
        kill_grace_s=1.0,
        report_linger_s=0.001,
        log_batch_bytes=65536,
        log_interval_s=0.05,
        log_cap_bytes=1 << 20,
        clock_ms=lambda: 1_000,
    )


def driver(run_id: str, tasks: list[str], denv: DriverEnv) -> RunDriver:
    lines = ["dag: {id: d}", "tasks:"] + [f"  - {{id: {t}, script: 'true'}}" for t in tasks]
    spec = spec_from_yaml("\n".join(lines) + "\n").to_dict()
    return RunDriver(Assignment(run_id, "d", spec, {}, Fence(1, 1), {}, created_ms=0), denv)


async def test_runs_sharing_a_worker_take_its_slots_in_turn(tmp_path: Path) -> None:
    executor, slots = HeldExecutor(), TaskSlots(1)
    denv = env(tmp_path, executor, slots)
    big = asyncio.create_task(driver("big", ["a1", "a2", "a3"], denv).drive())
    await executor.wait_started(1)
    small = asyncio.create_task(driver("small", ["b1"], denv).drive())
    await asyncio.sleep(0)  # the small run queues its task behind the big one's
    for n in (2, 3, 4):
        executor.finish(executor.started[-1])
        await executor.wait_started(n)
    executor.finish(executor.started[-1])
    await asyncio.wait_for(asyncio.gather(big, small), 5)
    # One slot. The big run was in line first, so a2 went next; then the small run's turn,
    # not after the big run's whole queue (one waiter per queued task would give a1 a2 a3 b1).
    assert executor.started == [("big", "a1"), ("big", "a2"), ("small", "b1"), ("big", "a3")]
    assert slots.free == 1


async def test_a_cancelled_walk_starts_nothing_more(tmp_path: Path) -> None:
    executor, slots = HeldExecutor(), TaskSlots(1)
    walk = asyncio.create_task(driver("r", ["t1", "t2"], env(tmp_path, executor, slots)).drive())
    await executor.wait_started(1)
    walk.cancel()  # t2 waits in the slots' line
    await asyncio.gather(walk, return_exceptions=True)
    executor.finish(("r", "t1"))
    # A driver still in line would take the freed slot in the same call that frees it, so
    # the slot is seen free only if nothing took it.
    async with asyncio.timeout(5):
        while slots.free != 1:
            await asyncio.sleep(0.001)
    assert executor.started == [("r", "t1")]
