"""Retention decisions, as pure functions: which finished runs to delete, whose logs to drop.

A run is judged by when it ended: past the run retention it is deleted whole, past the
(shorter) log retention only its job logs go. Runs that have not finished are never
touched. The sweep walks a DAG's runs oldest first and stops at the first run created after
the latest cutoff: every later run ended later still, so none of them is due.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kiok.core.states import TERMINAL_RUN_STATES

DAY_MS = 86_400_000


def days_ms(days: float) -> int | None:
    """A retention in days as ms; 0 or less means keep forever (None)."""
    return None if days <= 0 else max(1, int(days * DAY_MS))


@dataclass(frozen=True)
class Policy:
    """How long one DAG's finished runs and their logs are kept (None: forever)."""

    runs_ms: int | None
    logs_ms: int | None

    @classmethod
    def of(cls, dag_retention_ms: int | None, runs_ms: int | None, logs_ms: int | None) -> Policy:
        """A DAG's own ``retention`` replaces the global run retention; logs go no later
        than their run."""
        runs = dag_retention_ms if dag_retention_ms is not None else runs_ms
        logs = logs_ms if runs is None or (logs_ms is not None and logs_ms < runs) else None
        return cls(runs, logs)

    @property
    def keeps_everything(self) -> bool:
        return self.runs_ms is None and self.logs_ms is None


class Verdict(enum.Enum):
    KEEP = "keep"
    DELETE = "delete"
    PURGE_LOGS = "purge_logs"


def judge(run: Mapping[str, Any], policy: Policy, now_ms: int) -> Verdict:
    """What retention does to this run (a run header) now."""
    ended = run.get("endedMs")
    if run["state"] not in TERMINAL_RUN_STATES or ended is None:
        return Verdict.KEEP
    if policy.runs_ms is not None and ended < now_ms - policy.runs_ms:
        return Verdict.DELETE
    if policy.logs_ms is not None and ended < now_ms - policy.logs_ms and not run.get("logsPurgedMs"):
        return Verdict.PURGE_LOGS
    return Verdict.KEEP


def past_every_cutoff(run: Mapping[str, Any], policy: Policy, now_ms: int) -> bool:
    """Whether this run, and so every later run of its DAG, is too young for anything."""
    spans = [ms for ms in (policy.runs_ms, policy.logs_ms) if ms is not None]
    return not spans or run["createdMs"] >= now_ms - min(spans)
