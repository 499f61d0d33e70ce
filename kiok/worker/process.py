"""Running one task attempt as a child process, safely.

Each attempt gets its own process group (``start_new_session``), its own working directory
and a closed stdin. Output (stdout and stderr merged, in order) is pumped in 64 KiB reads
to a callback, so a task that prints without end never grows our memory. Stopping — on
timeout or cancel — signals the whole group: SIGTERM, a grace period, then SIGKILL; when
the attempt ends, anything it left behind in its group is killed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_READ_SIZE = 65536
#: How long we wait for the output pipe to close after the main process exited (a
#: background child may hold it open) before killing the group.
_PIPE_DRAIN_S = 1.0


@dataclass(frozen=True)
class ProcessOutcome:
    exit_code: int | None
    timed_out: bool = False
    stopped: bool = False


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    output: Callable[[bytes], None],
    timeout_s: float,
    stop: asyncio.Event,
    grace_s: float,
) -> ProcessOutcome:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=str(cwd),
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    pump = asyncio.create_task(_pump(proc.stdout, output))
    waiter = asyncio.ensure_future(proc.wait())
    stopper = asyncio.ensure_future(stop.wait())
    timed_out = stopped = False
    try:
        done, _ = await asyncio.wait({waiter, stopper}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            stopped = stopper in done
            timed_out = not stopped
            await _terminate(proc, waiter, grace_s)
        try:
            await asyncio.wait_for(asyncio.shield(pump), _PIPE_DRAIN_S)
        except TimeoutError:
            _signal_group(proc.pid, signal.SIGKILL)
            await pump
    finally:
        stopper.cancel()
        _signal_group(proc.pid, signal.SIGKILL)  # whatever the attempt left in its group
        if not waiter.done():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await waiter
    return ProcessOutcome(proc.returncode, timed_out=timed_out, stopped=stopped)


async def _terminate(proc: asyncio.subprocess.Process, waiter: asyncio.Future[int], grace_s: float) -> None:
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(waiter), grace_s)
    except TimeoutError:
        _signal_group(proc.pid, signal.SIGKILL)
        await waiter


async def _pump(stream: asyncio.StreamReader, output: Callable[[bytes], None]) -> None:
    while True:
        chunk = await stream.read(_READ_SIZE)
        if not chunk:
            return
        output(chunk)
