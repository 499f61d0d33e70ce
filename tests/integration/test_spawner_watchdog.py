"""The worker's watch over a spawner a task can stop (``user`` isolation: no pid namespace, so
the spawner is not a pid 1 that ignores SIGSTOP), from a review of it: ending a spawner
stopped again and again must take every task process with it, also attempts a python
template forked (the template's children, not the spawner's), and a worker shutting down
must not wait for ever on a spawner a task keeps stopping. Tasks run as the spawner's user
here (no attempt users): how a test has a task stop it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid

from tests.integration.test_isolation_attacks import _bench, _run, _spawner_stopped, _until
from tests.processes import processes_with

STOP_LOOP = "while kill -STOP $PPID; do :; done"


async def test_ending_a_stopped_spawner_kills_the_attempts_its_template_forked() -> None:
    seconds = f"4{uuid.uuid4().int % 10**6}.5"  # a sleep no other process runs
    argv = ["sleep", seconds]
    try:
        async with _bench("user", template=True, attempt_users=0) as bench:
            await _run(bench, "forked", "print('warm')", bench.dirs.take())
            stopper = asyncio.ensure_future(_run(bench, "sh", STOP_LOOP, bench.dirs.take()))
            forked = [
                asyncio.ensure_future(
                    _run(
                        bench,
                        "forked",
                        f"import os; os.execvp('sleep', ['sleep', '{seconds}'])",
                        bench.dirs.take(),
                        timeout_s=60,
                    )
                )
                for _ in range(4)
            ]
            outcomes = await asyncio.wait_for(asyncio.gather(*forked), 40)
            assert all("a task stopped it (SIGSTOP)" in (o.error or "") for o, _ in outcomes), outcomes
            await asyncio.wait_for(stopper, 20)
            await _until(lambda: not processes_with(argv), "the forked attempts to be gone")
    finally:
        for pid in processes_with(argv):
            os.kill(pid, signal.SIGKILL)


async def test_shutting_down_ends_a_spawner_a_task_keeps_stopping() -> None:
    async with _bench("user", attempt_users=0) as bench:
        stopper = asyncio.ensure_future(_run(bench, "sh", STOP_LOOP, bench.dirs.take()))
        await _until(lambda: bool(bench.runner.spawner_pids), "the spawner starts")
        (spawner,) = bench.runner.spawner_pids
        try:
            await _until(lambda: _spawner_stopped(spawner), "the task stops the spawner")
            await asyncio.wait_for(bench.runner.aclose(), 30)
            assert not os.path.exists(f"/proc/{spawner}/stat") or not _spawner_stopped(spawner)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(spawner, signal.SIGKILL)
            stopper.cancel()
            with contextlib.suppress(BaseException):
                await stopper
