"""Prometheus metrics of a master, in a registry of its own (no process-wide globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from kiok.store.effects import Effects


class MasterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs_created = Counter("kiok_runs_created", "Runs created", registry=self.registry)
        self.runs_finished = Counter(
            "kiok_runs_finished", "Runs that reached a terminal state", registry=self.registry
        )
        self.stale_reports = Counter(
            "kiok_stale_reports", "Task reports rejected for a stale fence or attempt", registry=self.registry
        )
        self.stale_log_batches = Counter(
            "kiok_stale_log_batches",
            "Worker log batches refused: not from the run's driver under its current fence, or the run ended",
            registry=self.registry,
        )
        self.commands = Counter(
            "kiok_commands_applied", "Commands applied to the state store", registry=self.registry
        )
        self.active_runs = Gauge("kiok_active_runs", "Runs not yet finished", registry=self.registry)

    def observe(self, fx: Effects) -> None:
        self.runs_created.inc(len(fx.runs_created))
        self.runs_finished.inc(len(fx.runs_finished))
        self.stale_reports.inc(fx.stale_reports)
        self.stale_log_batches.inc(fx.stale_logs)
        self.active_runs.inc(len(fx.runs_created) - len(fx.runs_finished))
