"""Shutting a worker-bearing process down in the open: the first SIGTERM/SIGINT drains (no
new runs; running ones may finish for ``kiok.worker.shutdown.drain.timeout.seconds``) and
says what it waits for, every ``PROGRESS_EVERY_S`` again; a second one stops at once: the
running tasks are stopped and their runs given back, to resume elsewhere or after a restart."""

from __future__ import annotations

import asyncio
import logging
import signal

from kiok.worker.worker import Worker

log = logging.getLogger("kiok.shutdown")

PROGRESS_EVERY_S = 10.0


class Signals:
    """``stop`` is set by the first SIGTERM or SIGINT, ``now`` by any after it."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.now = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._received)

    def _received(self) -> None:
        if self.stop.is_set():
            self.now.set()
        self.stop.set()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _waiting_for(worker: Worker) -> str:
    return f"{_plural(worker.busy_slots, 'running task')} of {_plural(len(worker.active_runs), 'run')}"


async def drain(worker: Worker, timeout_s: float, signals: Signals, gives_back: str) -> bool:
    """Drain ``worker`` as the module says; ``gives_back`` ends the line of a cut-short
    drain (what becomes of the runs). True when every run finished in time."""
    signals.stop.set()  # also when a failed server ended the wait: the next signal means now
    if worker.active_runs and not signals.now.is_set():
        log.info(
            "draining: waiting for %s, up to %d s; press Ctrl-C again to stop now",
            _waiting_for(worker),
            timeout_s,
        )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    drained = asyncio.create_task(worker.drain(timeout_s, stop_now=signals.now))
    now = asyncio.create_task(signals.now.wait())
    try:
        while not drained.done():
            done, _ = await asyncio.wait(
                {drained, now}, timeout=PROGRESS_EVERY_S, return_when="FIRST_COMPLETED"
            )
            if now in done:
                if worker.active_runs:
                    log.warning("stopping now: stopping %s; %s", _waiting_for(worker), gives_back)
                await drained
            elif not done:
                log.info(
                    "still waiting for %s, %d s left; press Ctrl-C again to stop now",
                    _waiting_for(worker),
                    max(0, deadline - loop.time()),
                )
    finally:
        now.cancel()
    finished = drained.result()
    if not finished and not signals.now.is_set():
        log.warning("drain timeout after %d s: %s", timeout_s, gives_back)
    return finished
