"""An executor that raises (a bug, or input nobody foresaw) fails its attempt like any task
failure: the run ends instead of keeping the task RUNNING past its timeout and any cancel."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kiok.protocol.messages import Fence
from kiok.worker.executors.base import AttemptContext, AttemptResult
from kiok.worker.slots import TaskSlots
from tests.unit.test_worker_driver_slots import QuietLink, driver, env


class RaisingExecutor:
    async def run(self, ctx: AttemptContext) -> AttemptResult:
        raise RuntimeError("unforeseen")


class RecordingLink(QuietLink):
    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}

    def report_tasks(self, run_id: str, fence: Fence, tasks: dict[str, dict[str, Any]]) -> None:
        self.tasks.update(tasks)


async def test_an_executor_that_raises_fails_the_attempt(tmp_path: Path) -> None:
    link = RecordingLink()
    denv = env(tmp_path, RaisingExecutor(), TaskSlots(1))  # type: ignore[arg-type]
    denv.link = link
    await asyncio.wait_for(driver("r", ["a"], denv).drive(), 5)
    assert link.tasks["a"]["state"] == "FAILED", link.tasks
    assert "RuntimeError: unforeseen" in link.tasks["a"]["error"], link.tasks
