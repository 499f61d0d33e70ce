"""The cron scheduler (leader only): turns due schedule intervals into runs.

Each tick asks ``kiok.core.cron.due_fires`` what is due for every unpaused scheduled DAG
and proposes one ``FireSchedule`` per DAG with due intervals. Because a scheduled run is
identified by (DAG, fire time), a proposal repeated after a crash or a leader change
creates nothing twice. The loop sleeps until the next fire time (at most one tick).
In maintenance mode due intervals are skipped for good (``kiok.core.maintenance``): the
watermark moves past them, no run is created, and each skip is logged at WARN.
Each tick also fails the runs past their DAG's ``run_timeout`` (``kiok.core.run_timeout``):
``FailRun`` stops them as a cancel does and ends them FAILED with the reason.
A DAG with ``kiok.scheduler.max.pending.runs.per.dag`` runs waiting to start gets no more
scheduled runs (``kiok.core.cron.fit_to_room``): its watermark stays, so the intervals due
meanwhile are caught up by its catch-up rules once runs start; that is logged once per stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from kiok.core.cron import due_fires, fit_to_room, next_fire_ms
from kiok.core.maintenance import split_fires
from kiok.core.run_timeout import overdue_runs
from kiok.core.timefmt import iso_utc
from kiok.errors import KiokError
from kiok.master.pending_quota import SETTING as PENDING_SETTING
from kiok.master.pending_quota import PendingQuota
from kiok.master.scheduled_dags import ScheduledDag, ScheduledDags
from kiok.store import commands as c
from kiok.store.commandlog import CommandLog
from kiok.store.effects import Effects
from kiok.store.reader import StateReader
from kiok.waits import wait_set

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        log_: CommandLog,
        reader: StateReader,
        clock_ms: Callable[[], int],
        *,
        tick_ms: int,
        catchup_max_runs: int,
        pending_quota: PendingQuota | None = None,
    ) -> None:
        self._log = log_
        self._reader = reader
        self._clock = clock_ms
        self._tick_ms = tick_ms
        self._max_runs = catchup_max_runs
        #: Bounds the runs a DAG has waiting to start (None: unbounded).
        self._quota = pending_quota
        #: DAGs whose schedule waits for room under the pending limit (logged once per stall).
        self._held: set[str] = set()
        self._wake = asyncio.Event()
        #: DAG id -> why its schedule could not be evaluated (logged once).
        self._broken: dict[str, str] = {}
        self._dags = ScheduledDags(reader)

    def kick(self) -> None:
        """Look again now (a DAG was registered, changed or unpaused)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                next_ms = await self.tick()
            except Exception:
                log.exception("scheduler tick failed")
                next_ms = None
            now = self._clock()
            sleep_ms = self._tick_ms if next_ms is None else min(self._tick_ms, max(0, next_ms - now))
            await wait_set(self._wake, sleep_ms / 1000)

    async def time_out_runs(self) -> int | None:
        """Fail the runs past their ``run_timeout``; the next deadline ahead, if any."""
        now = self._clock()
        overdue, next_deadline = overdue_runs(self._reader.active_runs(), now)
        for o in overdue:
            try:
                await self._log.propose(c.FailRun(at_ms=now, run_id=o.run_id, reason=o.reason))
            except KiokError as e:
                log.info("run %s not timed out: %s", o.run_id, e)
                continue
            log.warning("run %s: %s; its tasks are cancelled", o.run_id, o.reason)
        return next_deadline

    async def tick(self) -> int | None:
        """Fire what is due and time out overdue runs; return the earliest next fire time or
        run deadline."""
        now = self._clock()
        earliest: int | None = await self.time_out_runs()
        maintenance: dict[str, Any] | None = None  # read only when some DAG is due
        dags = self._dags.all()
        for dag in dags:
            if dag.first_due_ms is not None and dag.first_due_ms > now:
                nxt: int | None = dag.first_due_ms  # nothing due: nothing to read or propose
                self._broken.pop(dag.dag_id, None)
            else:
                if maintenance is None:
                    maintenance = self._reader.maintenance()
                nxt = await self._fire_dag(dag, now, maintenance)
            if nxt is not None:
                earliest = nxt if earliest is None else min(earliest, nxt)
        self._held &= {dag.dag_id for dag in dags}  # forget deleted and paused DAGs
        return earliest

    def on_effects(self, fx: Effects) -> None:
        self._dags.on_effects(fx)

    async def _fire_dag(self, dag: ScheduledDag, now: int, maintenance: dict[str, Any]) -> int | None:
        """Propose what is due for one DAG; its next fire time (None: not evaluated)."""
        dag_id, schedule, tz = dag.dag_id, dag.schedule, dag.tz
        try:
            room = self._room(dag_id, schedule, tz, dag.watermark_ms, now, maintenance)
            if room == 0:  # nothing to do until runs start: not even walking the missed fires
                self._hold(dag_id)
                return next_fire_ms(schedule, tz, now)
            due = due_fires(schedule, tz, dag.watermark_ms, now, catchup=dag.catchup, max_runs=self._max_runs)
            nxt = next_fire_ms(schedule, tz, max(now, due.watermark_ms))
        except Exception as e:  # one DAG (a zone this master's tzdata lacks, say) stops no other
            if self._broken.get(dag_id) != repr(e):  # once per DAG and cause, not every tick
                self._broken[dag_id] = repr(e)
                log.exception("DAG %s: schedule %r in %s not evaluated", dag_id, schedule, tz)
            return None
        self._broken.pop(dag_id, None)
        fire_times, skipped = split_fires(due.fire_times, maintenance)
        fire_times, watermark = fit_to_room(
            fire_times, due.watermark_ms, len(fire_times) if room is None else room
        )
        if watermark < due.watermark_ms:  # room for only some: the rest waits, uncounted
            self._hold(dag_id)
            skipped = tuple(t for t in skipped if t <= watermark)  # the others come again
        elif dag_id in self._held:
            self._held.discard(dag_id)
            log.info("DAG %s: runs have started; its schedule creates runs again", dag_id)
        dropped = due.dropped
        if skipped:
            first_skipped, count = skipped[0], len(skipped)
            if maintenance["enabled"] and dropped is not None:  # while on, those are skips too
                first_skipped, count, dropped = dropped[0], count + dropped[2], None
            _warn_skipped(dag_id, first_skipped, skipped[-1], count)
        if dropped is not None:
            first, last, count = dropped
            why = "catch-up cap kiok.scheduler.catchup.max.runs" if dag.catchup else "catchup is off"
            if due.dropped_exact:
                log.warning(
                    "DAG %s: %d missed interval(s) from %s to %s not run (%s)",
                    dag_id,
                    count,
                    iso_utc(first),
                    iso_utc(last),
                    why,
                )
            else:  # too many to count: the newest were kept all the same
                log.warning(
                    "DAG %s: more than %d missed interval(s) from %s on not run (%s)",
                    dag_id,
                    count,
                    iso_utc(first),
                    why,
                )
        if due.fire_times:  # with skipped ones, only to move the watermark past them
            try:
                async with self._admit(dag_id, len(fire_times)):
                    await self._log.propose(
                        c.FireSchedule(
                            at_ms=now,
                            dag_id=dag_id,
                            fire_times=fire_times,
                            watermark_ms=watermark,
                            catchup=len(fire_times) > 1 or dropped is not None,
                        )
                    )
            except KiokError as e:
                log.info("DAG %s not fired: %s", dag_id, e)
        return nxt

    def _room(
        self, dag_id: str, schedule: str, tz: str, watermark_ms: int, now: int, maintenance: dict[str, Any]
    ) -> int | None:
        """How many runs ``dag_id`` may still queue, asked only when a fire time is due (the
        count reads the run index); None: no bound applies (none set, or maintenance mode is on
        and skips what is due anyway)."""
        if (
            self._quota is None
            or maintenance.get("enabled")
            or next_fire_ms(schedule, tz, watermark_ms) > now
        ):
            return None
        return self._quota.room(dag_id)

    def _admit(self, dag_id: str, runs: int) -> AbstractAsyncContextManager[None]:
        """Count ``runs`` as being created while proposed, so a trigger meanwhile sees them."""
        return contextlib.nullcontext() if self._quota is None else self._quota.admit(dag_id, runs)

    def _hold(self, dag_id: str) -> None:
        """Log, once per stall, that ``dag_id``'s schedule waits for room (no spam per tick)."""
        if dag_id in self._held:
            return
        self._held.add(dag_id)
        log.warning(
            "DAG %s has %s runs waiting to start: its schedule creates no more until some "
            "start; the intervals due meanwhile then follow its catch-up rules",
            dag_id,
            PENDING_SETTING,
        )


def _warn_skipped(dag_id: str, first: int, last: int, count: int) -> None:
    log.warning(
        "DAG %s: %d cron firing(s) from %s to %s skipped for good: maintenance mode",
        dag_id,
        count,
        iso_utc(first),
        iso_utc(last),
    )
