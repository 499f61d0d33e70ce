"""Prometheus metrics of a master, in a registry of its own (no process-wide globals).

Two kinds: counters and histograms moved as command batches are applied (``observe``, once
per batch: nothing here runs per task except one list append in ``apply``), and gauges read
from the store, Raft and the coordinator when ``/metrics`` is scraped (``_Snapshot``).
docs/operations.md lists every metric; a test checks the list against this registry."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from kiok.core.queue_wait import queue_wait_ms, started_attempt
from kiok.core.readiness import UNSTARTED
from kiok.core.states import RunState, TaskRecord, TaskState
from kiok.errors import KiokError
from kiok.ids import TaskId
from kiok.store.effects import Effects

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from kiok.master.node import MasterNode

log = logging.getLogger(__name__)

#: Task and request durations: 5 ms to 6 h.
_TASK_BUCKETS = (0.005, 0.05, 0.25, 1, 5, 15, 60, 300, 900, 3600, 21600)
#: Queue waits: from 1 ms (a free slot) to an hour (a saturated pool).
_WAIT_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class MasterMetrics:
    def __init__(self, node: MasterNode | None = None) -> None:
        self.registry = CollectorRegistry()
        self._node = node
        r = self.registry
        self.runs_created = Counter("kiok_runs_created", "Runs created", registry=r)
        self.runs_finished = Counter(
            "kiok_runs_finished",
            "Runs that reached a terminal state, by DAG and state",
            ["dag", "state"],
            registry=r,
        )
        self.tasks_finished = Counter(
            "kiok_tasks_finished", "Tasks that reached a terminal state, by state", ["state"], registry=r
        )
        self.task_duration = Histogram(
            "kiok_task_duration_seconds",
            "Duration of a task's last attempt, observed when its final report is applied",
            ["state"],
            buckets=_TASK_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "kiok_task_queue_wait_seconds",
            "From a task becoming ready (upstreams met, retry due) to its attempt's start, by DAG",
            ["dag"],
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.stale_reports = Counter(
            "kiok_stale_reports", "Task reports rejected for a stale fence or attempt", registry=r
        )
        self.stale_log_batches = Counter(
            "kiok_stale_log_batches",
            "Worker log batches refused: not from the run's driver under its current fence, or the run ended",
            registry=r,
        )
        self.http_duration = Histogram(
            "kiok_http_request_duration_seconds",
            "Admin API requests by method, route template and status class",
            ["method", "route", "status"],
            buckets=_HTTP_BUCKETS,
            registry=r,
        )
        if node is not None:
            r.register(_Snapshot(node))
        #: Upstream records for the queue waits, held only by a single master: replicated
        #: ones also change state by installing snapshots, which no effects tell of.
        self._in_flight = InFlightRecords()

    def observe(self, fx: Effects) -> None:
        """Count what one applied batch did (on every master: each counts what it applied)."""
        held = self._node is not None and self._node.raft is None
        if held:
            self._in_flight.take(fx)
        if fx.runs_created:
            self.runs_created.inc(len(fx.runs_created))
        if fx.stale_reports:
            self.stale_reports.inc(fx.stale_reports)
        if fx.stale_logs:
            self.stale_log_batches.inc(fx.stale_logs)
        if fx.task_ends:
            self._task_ends(fx.task_ends)
        if fx.task_reports and self._node is not None:
            self._queue_waits(self._node, fx.task_reports)
        for run_id in fx.runs_finished:
            self._run_finished(run_id)
        if held:  # after the queue waits: a run's last task may start and end in this batch
            self._in_flight.forget(fx)

    def _task_ends(self, ends: list[tuple[str, int]]) -> None:
        by_state: dict[str, list[int]] = {}
        for state, ms in ends:
            by_state.setdefault(state, []).append(ms)
        for state, durations in by_state.items():
            self.tasks_finished.labels(state).inc(len(durations))
            hist = self.task_duration.labels(state)
            for ms in durations:
                hist.observe(ms / 1000)

    def _queue_waits(self, node: MasterNode, reports: list[tuple[str, str, TaskRecord, TaskRecord]]) -> None:
        """Observe the queue wait of each attempt a batch showed starting (``kiok.core.queue_wait``);
        reads only what that needs: the run's header and cached spec, and the upstreams'
        records of a first attempt."""
        headers: dict[str, dict[str, Any] | None] = {}
        #: Upstream records read for this batch: the tasks of a fan-out that start together
        #: share one upstream, read (and decrypted) once rather than once each.
        records: dict[tuple[str, str], TaskRecord] = {}
        held = self._in_flight
        hists: dict[str, Histogram] = {}
        for run_id, tid, before, after in reports:
            if not started_attempt(before, after) or after.started_at_ms is None:
                continue
            try:
                if run_id not in headers:
                    headers[run_id] = node.reader.run_header(run_id)
                header = headers[run_id]
                if header is None:
                    continue
                task = node.run_spec(run_id).task(TaskId(tid))
                ups: Mapping[TaskId, TaskRecord] = {}
                if before.state is TaskState.PENDING:
                    known = held.records(run_id)
                    if known is not None:
                        ups = known  # the run's every record: its upstreams are looked up there
                    else:
                        ups = {u: self._upstream(node, records, run_id, u) for u in task.requires}
            except (KiokError, KeyError):  # deleted meanwhile, or the store cannot be read
                continue
            rerun = header.get("lastRerun")
            floor = max(
                int(header.get("startedMs") or 0),
                # a re-run counts from when it got its driver (it may have queued before)
                int(rerun.get("startedMs") or rerun.get("atMs") or 0) if isinstance(rerun, dict) else 0,
            )
            wait = queue_wait_ms(task, before, after.started_at_ms, ups, floor)
            if wait is not None:
                hist = hists.get(run_id)
                if hist is None:
                    hist = hists[run_id] = self.queue_wait.labels(str(header.get("dagId", "")))
                hist.observe(wait / 1000)

    @staticmethod
    def _upstream(
        node: MasterNode, records: dict[tuple[str, str], TaskRecord], run_id: str, tid: TaskId
    ) -> TaskRecord:
        """Upstream ``tid``'s record, read from the store once per batch (``records``)."""
        rec = records.get((run_id, tid))
        if rec is None:
            raw = node.reader.task(run_id, tid)
            rec = records[run_id, tid] = UNSTARTED if raw is None else TaskRecord.from_dict(raw)
        return rec

    def _run_finished(self, run_id: str) -> None:
        dag, state = "", "UNKNOWN"
        if self._node is not None:
            try:
                header = self._node.reader.run_header(run_id)
            except KiokError:  # the store cannot be read (no keyring yet): counted unlabelled
                header = None
            if header is not None:
                dag, state = str(header.get("dagId", "")), str(header.get("state", state))
        self.runs_finished.labels(dag, state).inc()
        if self._node is not None and self._node.raft is not None and not self._node.raft.is_leader:
            return  # one line per run in the cluster: the leader's
        log.info("run %s of %s finished %s", run_id, dag, state, extra={"runId": run_id})


class InFlightRecords:
    """The task records of the runs created since this master started and not finished yet,
    as the command log writes them (``Effects.task_writes``: every record written). The
    queue wait of a task that starts reads its upstreams' records here rather than in the
    store: a 500-wide join read and decrypted 500 records when it started, ~20 µs a task of
    the fan-out 1→500→1. A run created before this master started, re-opened after it
    finished, or beyond ``max_runs`` held, is not here (None): its records are read."""

    def __init__(self, max_runs: int = 256) -> None:
        self._runs: dict[str, dict[TaskId, TaskRecord]] = {}
        self._max_runs = max_runs

    def take(self, fx: Effects) -> None:
        """Hold the runs ``fx`` created and the records it wrote."""
        if fx.restored is not None:  # the whole state was replaced
            self._runs.clear()
        for run_id in fx.runs_created:
            if len(self._runs) < self._max_runs:
                self._runs[run_id] = {}
        runs = self._runs
        for run_id, tid, _, rec in fx.task_writes:
            held = runs.get(run_id)
            if held is not None:
                held[TaskId(tid)] = rec

    def forget(self, fx: Effects) -> None:
        """Let go of the runs ``fx`` finished or deleted."""
        for run_id in (*fx.runs_finished, *fx.runs_deleted):
            self._runs.pop(run_id, None)

    def records(self, run_id: str) -> dict[TaskId, TaskRecord] | None:
        """Every record ``run_id`` has (a task without one is unstarted), or None when they
        are not all known here."""
        return self._runs.get(run_id)


class _Snapshot(Collector):
    """Gauges read at scrape time: active runs by state, pending age, workers and slots,
    commands applied and Raft's indexes."""

    def __init__(self, node: MasterNode) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node = self._node
        yield CounterMetricFamily(
            "kiok_commands_applied", "Commands applied to the state store", value=node.log_commands()
        )
        yield from self._runs(node)
        yield from self._workers(node)
        yield from self._archival(node)
        if node.raft is not None:
            yield from self._raft(node)

    def _runs(self, node: MasterNode) -> Iterator[Metric]:
        try:
            active = node.reader.active_runs()
        except KiokError:  # no keyring yet: nothing to say about runs
            return
        counts = dict.fromkeys((RunState.PENDING.value, RunState.RUNNING.value), 0)
        oldest_pending: int | None = None
        for run in active:
            counts[run["state"]] = counts.get(run["state"], 0) + 1
            if run["state"] == RunState.PENDING.value:
                created = int(run.get("createdMs") or 0)
                oldest_pending = created if oldest_pending is None else min(oldest_pending, created)
        runs = GaugeMetricFamily("kiok_runs", "Runs not yet finished, by state", labels=["state"])
        for state, n in sorted(counts.items()):
            runs.add_metric([state], n)
        yield runs
        yield GaugeMetricFamily("kiok_active_runs", "Runs not yet finished", value=len(active))
        yield GaugeMetricFamily(
            "kiok_pending_runs", "Runs waiting for a worker", value=counts[RunState.PENDING.value]
        )
        age = 0.0 if oldest_pending is None else max(0.0, (node.clock_ms() - oldest_pending) / 1000)
        yield GaugeMetricFamily(
            "kiok_oldest_pending_run_age_seconds", "Age of the oldest pending run (0: none)", value=age
        )

    def _archival(self, node: MasterNode) -> Iterator[Metric]:
        """Job-log archival to S3 (moves on the leader; a follower shows what it did as leader)."""
        stats = node.archival.stats
        yield CounterMetricFamily(
            "kiok_joblog_archived_bytes", "Job-log bytes archived to S3", value=stats.archived_bytes
        )
        yield CounterMetricFamily(
            "kiok_joblog_archive_errors",
            "Failed archival uploads or deletes (S3 unreachable or refusing)",
            value=stats.errors,
        )
        yield GaugeMetricFamily(
            "kiok_joblog_archive_lag_bytes",
            "Job-log bytes waiting to be archived to S3 (kept locally until then)",
            value=node.archival.lag_bytes(),
        )

    def _workers(self, node: MasterNode) -> Iterator[Metric]:
        infos = [w.info() for w in node.coordinator.workers.values()]
        yield GaugeMetricFamily(
            "kiok_workers_connected",
            "Workers connected to this master (the leader's count is the cluster's)",
            value=sum(1 for i in infos if i.connected),
        )
        slots = GaugeMetricFamily(
            "kiok_worker_slots", "Task slots of each connected worker", labels=["worker", "state"]
        )
        for info in infos:
            if info.connected:
                slots.add_metric([info.id, "busy"], info.slots - info.free)
                slots.add_metric([info.id, "free"], info.free)
        yield slots

    def _raft(self, node: MasterNode) -> Iterator[Metric]:
        raft = node.raft
        assert raft is not None
        status = raft.status()
        yield GaugeMetricFamily("kiok_raft_term", "Current Raft term", value=raft.term)
        yield GaugeMetricFamily(
            "kiok_raft_commit_index", "Raft commit index", value=status.get("commitIndex") or 0
        )
        yield GaugeMetricFamily(
            "kiok_raft_applied_index",
            "Raft index applied to this master's store",
            value=status.get("lastApplied") or 0,
        )
        yield GaugeMetricFamily("kiok_raft_is_leader", "1 on the Raft leader", value=int(raft.is_leader))
        yield CounterMetricFamily(
            "kiok_raft_leader_changes", "New leaders this master has seen elected", value=raft.leader_changes
        )
