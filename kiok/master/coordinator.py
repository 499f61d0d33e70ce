"""The run coordinator (leader only): gives each unfinished run, whole, to one worker.

A dispatch pass looks at every unfinished run that no live driver holds and either assigns
it — ``AssignRun`` commits a new fence first, then the worker is offered the run — or records
why it waits (maintenance mode, paused DAG, ``max_active_runs``, no matching worker, no
capacity). Placement:
among connected, non-draining workers with a free slot whose labels include all the DAG's
labels and that are not backing off after NAKs, the most specific match (fewest labels), then
the one with the most free slots. Passes are triggered by committed
changes (new run, finished run, worker joined) rather than by polling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from kiok.config import Settings
from kiok.core.holds import hold_reason
from kiok.core.interruption import REVOKED_ERROR, cancel_reason
from kiok.core.placeholders import references
from kiok.core.runlog import run_log_line
from kiok.core.states import TERMINAL_RUN_STATES
from kiok.core.tracecontext import run_trace
from kiok.errors import KiokError, StoreUnavailable
from kiok.ids import RUN_LOG_TASK
from kiok.master.run_terms import RunTermsCache
from kiok.protocol.link import WorkerHandle, WorkerInfo
from kiok.protocol.messages import Assignment, Claim, Fence, OfferVerdict
from kiok.store import commands as c
from kiok.store.commandlog import CommandLog
from kiok.store.effects import Effects
from kiok.store.reader import StateReader

log = logging.getLogger(__name__)


_NAK_BACKOFF_MS = (500, 1000, 2000, 5000, 10000)


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class Coordinator:
    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        log_: CommandLog,
        reader: StateReader,
        append_log: Callable[[str, str, bytes], object],
        clock_ms: Callable[[], int],
        *,
        term: int,
        tracing: bool = False,
        monotonic_ms: Callable[[], int] = _monotonic_ms,
        terms: RunTermsCache | None = None,
    ) -> Coordinator:
        """A leader's coordinator with the timings its settings give: a driver has the
        heartbeat timeout to reconnect and claim its runs; a worker silent for three heartbeat
        intervals is offered runs last."""
        return cls(
            log_,
            reader,
            append_log,
            clock_ms,
            term=term,
            reattach_grace_ms=settings.get_int("kiok.worker.heartbeat.timeout.ms"),
            silent_after_ms=3 * settings.get_int("kiok.worker.heartbeat.interval.ms"),
            tracing=tracing,
            monotonic_ms=monotonic_ms,
            terms=terms,
        )

    def __init__(
        self,
        log_: CommandLog,
        reader: StateReader,
        append_log: Callable[[str, str, bytes], object],
        clock_ms: Callable[[], int],
        *,
        term: int = 1,
        reattach_grace_ms: int = 0,
        silent_after_ms: int = 0,
        tracing: bool = False,
        monotonic_ms: Callable[[], int] = _monotonic_ms,
        terms: RunTermsCache | None = None,
    ) -> None:
        """``clock_ms`` is the wall clock (timestamps, and a worker's last heartbeat, which
        is one); how long something waits (the reconnect grace, a NAK's back-off) is measured
        on ``monotonic_ms``, so a step of the wall clock (NTP, a resumed VM) neither cuts the
        grace short (a live driver's runs given away) nor stretches it (runs stalled)."""
        self._log = log_
        #: Give drivers the run's ``traceparent`` (``kiok.otel.enabled``).
        self._tracing = tracing
        self._reader = reader
        self._append_log = append_log
        self._clock = clock_ms
        self._mono = monotonic_ms
        self.term = term
        self.workers: dict[str, WorkerHandle] = {}
        #: run id -> worker id, for runs a live driver holds under this leadership.
        self._driving: dict[str, str] = {}
        #: Runs of ``_driving`` that their driver's heartbeat has named: one that stops
        #: naming it no longer holds it (``claims_seen``).
        self._confirmed: set[str] = set()
        self._naks: dict[str, tuple[int, int]] = {}  # worker -> (count, until, monotonic ms)
        self.waiting: dict[str, str] = {}
        #: After this coordinator starts, a run's previous driver gets this long to reconnect
        #: and claim it before the run is reassigned.
        self._grace_until_ms = monotonic_ms() + reattach_grace_ms
        #: A worker not heard from for this long is offered runs only if no other can take
        #: them (0: never judged; ``kiok.worker.heartbeat.interval.ms`` × 3 on a master).
        self._silent_after_ms = silent_after_ms
        #: What a pass needs of each unfinished run's spec (the node's, shared with the
        #: notifier): a pass reads a spec only for a run it assigns.
        self._terms = terms if terms is not None else RunTermsCache(reader.run_spec)
        #: Runs that ended while a pass was under way (it awaits each assignment).
        self._ended_in_pass: set[str] = set()
        self._kick = asyncio.Event()
        self._kick.set()

    # --- inputs ----------------------------------------------------------------------------

    def on_effects(self, fx: Effects) -> None:
        # Cancels first: a cancel that ends the run at once (nothing was running: its tasks
        # were queued, or waiting to retry) must still reach the driver, which would
        # otherwise start them — once the run is dropped below, nobody drives it any more.
        for run_id, worker_id, reason in fx.cancels:
            handle = self.workers.get(worker_id)
            if handle is not None and self._driving.get(run_id) == worker_id:
                handle.cancel(run_id, reason)
        for run_id in fx.runs_finished:
            self._drop(run_id)
            self.waiting.pop(run_id, None)
            self._ended_in_pass.add(run_id)
        for run_id in fx.fences_changed:
            # Given back by its driver (drain timeout, shutdown, a crashed driver): the run
            # goes back to the pool at once rather than when the worker is lost.
            header = self._reader.run_header(run_id) if run_id in self._driving else None
            if header is not None and header["worker"] is None:
                self._drop(run_id)
                self._kick.set()
        if fx.runs_created or fx.runs_finished or fx.runs_reopened or fx.dags_changed:
            self._kick.set()

    def add_worker(self, handle: WorkerHandle) -> None:
        wid = handle.info().id
        self.workers[wid] = handle
        # A cancel (or run timeout) of a run it kept (``reattach``) may have committed while
        # it was cut off, or under a leader that died before telling it: the CANCEL then went
        # into a closed connection or nowhere, and the driver would walk the rest of the
        # graph. Said again on every (re)connection; a driver that knows already ignores it.
        for run_id, w in list(self._driving.items()):
            if w != wid:
                continue
            run = self._reader.run_header(run_id)
            if run is not None and run["cancel"] and run["state"] not in TERMINAL_RUN_STATES:
                handle.cancel(run_id, cancel_reason(run.get("cancelBy"), run.get("failReason")))
        self._kick.set()

    def reattach(self, worker_id: str, claims: Iterable[Claim]) -> tuple[Claim, ...]:
        """A worker (re)connected saying which runs it holds, under which fences (or, after a
        single master's restore, the runs it last said it holds). Those it still owns stay
        with it; the others are returned: it must abandon them (only under the fence claimed).
        Runs we thought it drove but it does not claim go back to the pool."""
        abandon: list[Claim] = []
        claimed: set[str] = set()
        for claim in claims:
            run_id = claim.run_id
            run = self._reader.run_header(run_id)
            current = (
                run is not None
                and run["state"] not in TERMINAL_RUN_STATES
                and run["worker"] == worker_id
                and (run["term"], run["epoch"]) == (claim.fence.term, claim.fence.epoch)
            )
            if current:
                self._driving[run_id] = worker_id
                self._confirmed.add(run_id)
                self.waiting.pop(run_id, None)  # "waiting for its driver to reconnect": it has
                claimed.add(run_id)
            else:
                abandon.append(claim)
        for run_id, w in list(self._driving.items()):
            if w == worker_id and run_id not in claimed:
                self._drop(run_id)
        self._kick.set()
        return tuple(abandon)

    def claims_seen(self, worker_id: str, runs: set[str]) -> None:
        """A heartbeat of ``worker_id`` named the runs it holds. A run it was seen holding
        and no longer names has no driver (it ended without a word that reached us): it goes
        back to the pool now instead of waiting, stalled, until the worker is lost."""
        for run_id, w in list(self._driving.items()):
            if w != worker_id:
                continue
            if run_id in runs:
                self._confirmed.add(run_id)
            elif run_id in self._confirmed:
                self._drop(run_id)
                self._run_log(run_id, f"worker {worker_id} no longer holds the run: it is assigned again")
                self._kick.set()

    def _drop(self, run_id: str) -> None:
        self._driving.pop(run_id, None)
        self._confirmed.discard(run_id)

    def worker_lost(self, worker_id: str) -> None:
        """Runs the worker drove go back to the pool (reassigned under a new fence)."""
        self.workers.pop(worker_id, None)
        for run_id, w in list(self._driving.items()):
            if w == worker_id:
                self._drop(run_id)
        self._kick.set()

    def kick(self) -> None:
        self._kick.set()

    def capacity_freed(self, worker_id: str) -> None:
        """A task slot came free on a worker: runs waiting for room may go now."""
        if self.waiting:
            self._naks.pop(worker_id, None)
            self._kick.set()

    # --- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            try:
                wake_ms = await self.dispatch_pass()
            except Exception:
                log.exception("dispatch pass failed")
                wake_ms = 1000
            if wake_ms is not None and not self._kick.is_set():
                asyncio.get_running_loop().call_later(wake_ms / 1000, self._kick.set)

    async def dispatch_pass(self) -> int | None:
        """Assign what can be assigned; return when to look again (ms) if something waits
        on time (NAK back-off), else None.

        A pass costs one read of each unfinished run's header, plus the spec of each run it
        assigns: a backlog (a backfill, runs queued behind ``max_active_runs``) is looked at
        on every run's end, so a pass must not read and decode every queued run's spec."""
        now, mono = self._clock(), self._mono()
        listed = self._reader.active_runs()
        active = [r for r in listed if r["runId"] not in self._driving]
        if not active:
            return None
        self._terms.keep_only(r["runId"] for r in listed)
        self._ended_in_pass.clear()
        gates = _PendingGates(self._reader, listed)
        retry_ms: int | None = None
        for run in active:
            run_id = run["runId"]
            # Every ``_assign`` awaits: meanwhile a driver may have reconnected and claimed
            # this run, or it may have ended (``on_effects`` notes both).
            if run_id in self._driving or run_id in self._ended_in_pass:
                continue
            terms = self._terms.of(run_id)
            if terms is None:
                continue
            if run["state"] == "PENDING" and (why := gates.why_wait(run["dagId"], terms.max_active_runs)):
                self.waiting[run_id] = why
                continue
            previous = run["worker"]
            if previous is not None and previous not in self.workers and mono < self._grace_until_ms:
                self.waiting[run_id] = f"waiting for its driver {previous} to reconnect"
                retry_ms = min(retry_ms or 10**9, self._grace_until_ms - mono)
                continue
            if run["cancel"]:
                await self._finish_cancel(run)
                continue
            worker, why = self.pick_worker(terms.labels, now)
            if worker is None:
                self.waiting[run_id] = why
                backoff_until = min((u for _, u in self._naks.values() if u > mono), default=None)
                if backoff_until is not None:
                    retry_ms = min(retry_ms or 10**9, backoff_until - mono)
                continue
            # Decided on the header the pass started with; assigned on the run as it is now.
            fresh = self._reader.run_header(run_id)
            spec = self._reader.run_spec(run_id)
            if fresh is None or spec is None or (fresh["state"], fresh["worker"]) != (run["state"], previous):
                self._kick.set()  # it changed since the pass began: the next pass decides
                continue
            if run["state"] == "PENDING":
                gates.started(run["dagId"])
            if not await self._assign(fresh, spec, terms.labels, worker):
                retry_ms = min(retry_ms or 10**9, _NAK_BACKOFF_MS[0])
            gates.refresh()  # the DAG may have been paused, or maintenance switched on, meanwhile
        return retry_ms

    def pick_worker(self, labels: tuple[str, ...], now: int) -> tuple[WorkerHandle | None, str]:
        """The worker to offer a run needing ``labels`` to, or None and why there is none."""
        connected = [w for w in self.workers.values() if w.info().connected]
        if not connected:
            return None, "no worker is connected"
        matching = [w for w in connected if set(labels) <= set(w.info().labels)]
        if not matching:
            return None, f"no connected worker has labels {list(labels)}"
        ready = [w for w in matching if not w.info().draining]
        if not ready:
            return None, "every matching worker is draining"
        with_room = [w for w in ready if w.info().free > 0]
        if not with_room:
            return None, "every matching worker is at capacity (all task slots busy)"
        mono = self._mono()
        usable = [w for w in with_room if self._naks.get(w.info().id, (0, 0))[1] <= mono]
        if not usable:
            return None, "every matching worker refused the run recently (backing off)"
        # A worker not heard from for a few heartbeats may be frozen (SIGSTOP, a stalled
        # host): its offer would hang until it times out. Others first, if there are any.
        fresh = [w for w in usable if not self._silent(w.info(), now)]
        usable = fresh or usable
        # The most specific match (fewest labels beyond those asked for) wins; among those,
        # the worker with the most free slots.
        return max(usable, key=lambda w: (-len(w.info().labels), w.info().free)), ""

    def _silent(self, info: WorkerInfo, now: int) -> bool:
        last = info.last_heartbeat_ms
        return self._silent_after_ms > 0 and last is not None and now - last > self._silent_after_ms

    def _lost_error(self, previous: str | None) -> str:
        """What the tasks the run's previous driver had running are left with (``AssignRun``):
        they say its worker was revoked when it was (the run log then says so, not "lost")."""
        record = self._reader.admitted_worker(previous) if previous else None
        return REVOKED_ERROR if record is not None and record.get("revoked") else ""

    async def _finish_cancel(self, run: dict[str, Any]) -> None:
        """A cancelled (or timed out) run whose driver is gone, or gave it back: stopping it
        is all that is left, and no driver is left to. It is taken from the driver it names
        (as a new assignment would take it) and its cancel finished here, so it ends rather
        than wait, RUNNING, for a worker that can take it (found by reviewing revocation: a
        run whose only able worker died could not be cancelled)."""
        run_id, previous = run["runId"], run["worker"]
        try:
            if previous is not None:
                released = await self._log.propose(
                    c.ReleaseRun(
                        at_ms=self._clock(),
                        run_id=run_id,
                        epoch=run["epoch"],
                        reason="its driver is gone",
                        worker=previous,
                        lost_error=self._lost_error(previous),
                    )
                )
                if not released.get("released"):
                    self._kick.set()  # it changed meanwhile: the next pass decides
                    return
            await self._log.propose(c.CancelRun(at_ms=self._clock(), run_id=run_id))
        except StoreUnavailable:  # said once: this master stops
            return
        except KiokError as e:
            log.info("not finishing the cancel of %s: %s", run_id, e)
            return
        gone = f" (its driver {previous} is gone)" if previous else ""
        self._run_log(
            run_id, f"run stopped, {cancel_reason(run.get('cancelBy'), run.get('failReason'))}{gone}"
        )

    async def _assign(
        self, run: dict[str, Any], spec: dict[str, Any], labels: tuple[str, ...], worker: WorkerHandle
    ) -> bool:
        run_id = run["runId"]
        wid = worker.info().id
        try:
            now = self._clock()
            fence = await self._log.propose(
                c.AssignRun(
                    at_ms=now,
                    run_id=run_id,
                    worker=wid,
                    term=self.term,
                    fence_floor=c.fence_floor(now),
                    respect_holds=True,
                    lost_error=self._lost_error(run["worker"]),
                )
            )
        except StoreUnavailable:  # said once: this master stops
            return True
        except KiokError as e:
            log.info("not assigning %s: %s", run_id, e)
            return True
        # On a first assignment every task is still unstarted (only a driver's reports change
        # tasks, and a cancel before any driver ends the run): no task records to read.
        first = bool(fence.get("first"))
        current = self._reader.run_header(run_id) if first else self._reader.run(run_id)
        assert current is not None
        assignment = Assignment(
            run_id=run_id,
            dag_id=run["dagId"],
            spec=spec,
            args=current["args"],
            fence=Fence(fence["term"], fence["epoch"]),
            tasks={} if first else current["tasks"],
            created_ms=current["createdMs"],
            scheduled_ms=current["scheduledMs"],
            cancel=current["cancel"],
            secrets=self._secrets_for(spec),
            traceparent=run_trace(run_id, current.get("trace")).traceparent if self._tracing else None,
        )
        self._driving[run_id] = wid
        self.waiting.pop(run_id, None)
        reply = await worker.offer(assignment, labels)
        if reply.verdict is OfferVerdict.ACK:
            self._naks.pop(wid, None)
            self._run_log(run_id, f"assigned to worker {wid} (fence {fence['term']}/{fence['epoch']})")
            return True
        if self._driving.get(run_id) == wid and run_id in self._confirmed:
            # The worker took the run, its connection broke before the answer came, and it
            # has reconnected claiming the run under this fence (``reattach``): the refusal is
            # the old connection's. Releasing now would take the run from its live driver.
            self._run_log(run_id, f"worker {wid} reconnected holding the run: it keeps it")
            return True
        self._drop(run_id)
        count = self._naks.get(wid, (0, 0))[0] + 1
        self._naks[wid] = (count, self._mono() + _NAK_BACKOFF_MS[min(count, len(_NAK_BACKOFF_MS)) - 1])
        self.waiting[run_id] = reply.reason
        self._run_log(run_id, f"worker {wid} refused the run: {reply.reason}")
        await self._log.propose(
            c.ReleaseRun(
                at_ms=self._clock(), run_id=run_id, epoch=fence["epoch"], reason=reply.reason, worker=wid
            )
        )
        return False

    def _secrets_for(self, spec: dict[str, Any]) -> dict[str, dict[str, str]]:
        """Only the connection values the run's tasks refer to. They travel inside this
        assignment and are never stored with the run; an unknown one is left out, so the
        task that needs it fails with a clear error on the worker."""
        wanted: dict[str, set[str]] = {}
        for task in spec["tasks"]:
            for text in [task.get("script") or "", *(task.get("config") or {}).values()]:
                for conn_id, key in references(str(text)):
                    wanted.setdefault(conn_id, set()).add(key)
        out: dict[str, dict[str, str]] = {}
        for conn_id, keys_ in wanted.items():
            record = self._reader.connection(conn_id)
            if record is not None:
                props = record["properties"]
                out[conn_id] = {key: props[key] for key in keys_ if key in props}
        return out

    def _run_log(self, run_id: str, text: str) -> None:
        self._append_log(run_id, RUN_LOG_TASK, f"{run_log_line(self._clock(), text)}\n".encode())

    run_log = _run_log


class _PendingGates:
    """Why a PENDING run waits, during one dispatch pass: maintenance mode, its DAG paused,
    or its DAG's ``max_active_runs`` reached. Read once per pass, and again after every
    offer (the pass awaited: a pause or maintenance may have been committed meanwhile)."""

    def __init__(self, reader: StateReader, listed: list[dict[str, Any]]) -> None:
        self._reader = reader
        self._running: dict[str, int] = {}
        for run in listed:
            if run["state"] == "RUNNING":
                self._running[run["dagId"]] = self._running.get(run["dagId"], 0) + 1
        self._paused: dict[str, bool] = {}
        self._maintenance = reader.maintenance()["enabled"]

    def why_wait(self, dag_id: str, max_active_runs: int) -> str | None:
        if dag_id not in self._paused:
            dag = self._reader.dag(dag_id)
            self._paused[dag_id] = dag is not None and bool(dag["paused"])
        if held := hold_reason(dag_id, maintenance=self._maintenance, paused=self._paused[dag_id]):
            return held
        if self._running.get(dag_id, 0) >= max_active_runs:
            return f"max_active_runs ({max_active_runs}) reached for DAG {dag_id}"
        return None

    def started(self, dag_id: str) -> None:
        """A run of ``dag_id`` is being offered. It counts whatever the worker answers: a run
        it refuses is released, and stays RUNNING (driverless) until the next pass."""
        self._running[dag_id] = self._running.get(dag_id, 0) + 1

    def refresh(self) -> None:
        self._paused.clear()
        self._maintenance = self._reader.maintenance()["enabled"]
