"""A worker: takes whole runs (ACK or NAK), drives each with a ``RunDriver`` over one shared
pool of task slots, and can be drained. Holds nothing authoritative: losing it loses only
the runs it drove, which the masters reassign."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from kiok import logs
from kiok.core.interruption import CRASH_REASON, SHUTDOWN_REASON
from kiok.protocol.messages import Assignment, Fence, OfferReply, OfferVerdict
from kiok.worker.driver import DriverEnv, RunDriver

log = logging.getLogger(__name__)


def normalise_labels(labels: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({label.strip().lower() for label in labels if label.strip()}))


class Worker:
    def __init__(
        self, env: DriverEnv, *, slots: int, labels: Iterable[str] = (), task_isolation: str = "none"
    ) -> None:
        self.id = env.worker_id
        self.env = env
        self.total_slots = slots
        self.labels = normalise_labels(labels)
        #: How its tasks are kept from kiok (``kiok.worker.isolation``): shown, and told the masters.
        self.task_isolation = task_isolation
        self.draining = False
        self._shutting_down = False
        self.started_monotonic = time.monotonic()
        self._drivers: dict[str, tuple[RunDriver, asyncio.Task[None], int]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    # --- what the coordinator calls --------------------------------------------------------

    def offer(self, assignment: Assignment, required_labels: Iterable[str] = ()) -> OfferReply:
        if self.draining:
            return OfferReply(OfferVerdict.NAK, f"worker {self.id} is draining")
        if self.busy_slots >= self.total_slots:
            return OfferReply(
                OfferVerdict.NAK,
                f"worker {self.id} is at capacity ({self.total_slots} of {self.total_slots} slots busy)",
            )
        missing = set(normalise_labels(required_labels)) - set(self.labels)
        if missing:
            return OfferReply(OfferVerdict.NAK, f"worker {self.id} lacks labels {sorted(missing)}")
        old = self._drivers.get(assignment.run_id)
        if old is not None:
            # The same run under a newer fence: the old driver must not report any more.
            retire = asyncio.create_task(self._retire(old[0], old[1]))
            self._background.add(retire)
            retire.add_done_callback(self._background.discard)
        try:
            driver = RunDriver(assignment, self.env)
        except Exception as e:  # a bug must not leave the run assigned to no driver, for ever
            log.exception("cannot drive run %s", assignment.run_id)
            return OfferReply(OfferVerdict.NAK, f"worker {self.id} cannot drive the run: {type(e).__name__}")
        task = asyncio.create_task(self._drive(driver))
        self._drivers[assignment.run_id] = (driver, task, self.env.clock_ms())
        self._idle.clear()
        return OfferReply(OfferVerdict.ACK)

    @staticmethod
    async def _retire(driver: RunDriver, task: asyncio.Task[None]) -> None:
        await driver.abandon()
        task.cancel()

    def abandon(self, run_id: str, reason: str, fence: Fence | None = None) -> None:
        """Stop driving a run that now belongs to another driver: its tasks are stopped at
        once and nothing more is reported for it. With ``fence``, only a driver holding that
        fence is stopped (a refusal of an older driver's message leaves a newer one alone)."""
        entry = self._drivers.get(run_id)
        if entry is None or (fence is not None and entry[0].fence != fence):
            return
        del self._drivers[run_id]
        log.warning("abandoning run %s: %s", run_id, reason)
        retire = asyncio.create_task(self._retire(entry[0], entry[1]))
        self._background.add(retire)
        retire.add_done_callback(self._background.discard)
        if not self._drivers:
            self._idle.set()

    def abandon_all(self, reason: str) -> None:
        """Stop driving every run (this worker may no longer drive any: e.g. it was revoked).
        Their tasks are stopped and their assignments, secrets included, dropped."""
        for run_id in list(self._drivers):
            self.abandon(run_id, reason)

    def report_all(self) -> None:
        """Every driver sends its whole state (``RunDriver.report_all``): after a reconnect."""
        for driver, _, _ in self._drivers.values():
            driver.report_all()

    def claims(self) -> list[dict[str, Any]]:
        """The runs this worker drives, with their fences (told to the master on connect)."""
        return [
            {"run": run_id, "term": d.fence.term, "epoch": d.fence.epoch}
            for run_id, (d, _, _) in self._drivers.items()
        ]

    def cancel(self, run_id: str, reason: str = "") -> None:
        """Stop the run ``run_id`` if this worker drives it; ``reason`` as ``RunDriver.cancel``."""
        entry = self._drivers.get(run_id)
        if entry is not None:
            entry[0].cancel(reason)

    async def _drive(self, driver: RunDriver) -> None:
        logs.RUN_ID.set(driver.run_id)  # this task's context: every line it logs names the run
        try:
            await driver.drive()
        except Exception:
            log.exception("driver of run %s crashed", driver.run_id)
            await driver.abandon()
            self.env.link.release_run(driver.run_id, driver.fence, CRASH_REASON)
        finally:
            entry = self._drivers.get(driver.run_id)
            if entry is not None and entry[0] is driver:
                del self._drivers[driver.run_id]
            if not self._drivers:
                self._idle.set()

    # --- drain and shutdown ----------------------------------------------------------------

    def start_drain(self) -> None:
        """Stop taking runs; the ones being driven finish."""
        self.draining = True

    def stop_drain(self) -> bool:
        """Take runs again after ``start_drain``; False (and still draining) once the worker
        is shutting down."""
        if self._shutting_down:
            return False
        self.draining = False
        return True

    async def drain(self, timeout_s: float, stop_now: asyncio.Event | None = None) -> bool:
        """Drain and wait up to ``timeout_s`` (or until ``stop_now`` is set) for running
        runs; give back those still running then. True when everything finished in time."""
        self._shutting_down = True
        self.start_drain()
        waits = [asyncio.create_task(self._idle.wait())]
        if stop_now is not None:
            waits.append(asyncio.create_task(stop_now.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        finished = not self._drivers
        await self.stop()
        return finished

    async def stop(self) -> None:
        for run_id, (driver, task, _) in list(self._drivers.items()):
            driver.flush_reports()  # what changed in the last linger still counts
            await driver.abandon(shutdown=True)
            task.cancel()
            self.env.link.release_run(run_id, driver.fence, SHUTDOWN_REASON)
        await asyncio.gather(*(t for _, t, _ in self._drivers.values()), return_exceptions=True)

    # --- status ----------------------------------------------------------------------------

    @property
    def busy_slots(self) -> int:
        return self.env.slots.busy

    @property
    def active_runs(self) -> list[str]:
        return list(self._drivers)

    def status(self, master_connection: str) -> dict[str, Any]:
        """What the unauthenticated status port shows: the worker itself and counts, never
        which runs or DAGs it drives or drove (anyone on the host can read it)."""
        busy = self.busy_slots
        return {
            "instanceId": self.id,
            "role": "worker",
            "masterConnection": master_connection,
            "draining": self.draining,
            "uptimeSeconds": round(time.monotonic() - self.started_monotonic, 1),
            "slots": {"total": self.total_slots, "busy": busy, "free": self.total_slots - busy},
            "labels": list(self.labels),
            "taskIsolation": self.task_isolation,
            "activeRuns": len(self._drivers),
        }
