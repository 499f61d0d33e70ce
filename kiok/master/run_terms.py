"""What the leader's loops need of each unfinished run's spec, read once per run.

The coordinator's dispatch pass and the notifier's SLA check look at every unfinished run,
and both run again whenever a run ends. Reading and decoding each run's spec there made a
backlog quadratic: 800 runs queued behind ``max_active_runs: 1`` took 26 s to trigger and
run, most of it decrypting and decoding the specs of runs that were only to wait again. A
run's spec never changes once the run exists, so what those loops need of it is kept here,
per run id, until the run ends (or a restore or snapshot replaces the state).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kiok.dag.load import compiled_spec
from kiok.dag.spec import DEFAULT_MAX_ACTIVE_RUNS
from kiok.errors import KiokError
from kiok.store.effects import Effects

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunTerms:
    """The parts of a run's spec that decide when it may start and when it is late."""

    max_active_runs: int
    labels: tuple[str, ...]
    sla_ms: int | None


def terms_of(run_id: str, doc: dict[str, Any]) -> RunTerms:
    dag = doc.get("dag", {})
    sla_ms = None
    if "sla" in dag:  # a duration to parse, from a spec a later version may judge invalid:
        try:  # that run misses its SLA check, and nothing else (every run waits on a pass)
            sla_ms = compiled_spec(doc).sla_ms
        except KiokError as e:
            log.warning("run %s: its SLA is not checked: %s", run_id, e.message)
    return RunTerms(dag.get("max_active_runs", DEFAULT_MAX_ACTIVE_RUNS), tuple(dag.get("labels", ())), sla_ms)


class RunTermsCache:
    """``RunTerms`` by run id, read from the run's stored spec on first use."""

    def __init__(self, read_spec: Callable[[str], dict[str, Any] | None]) -> None:
        self._read_spec = read_spec
        self._terms: dict[str, RunTerms] = {}

    def of(self, run_id: str) -> RunTerms | None:
        """The run's terms; None when it has no stored spec (deleted)."""
        terms = self._terms.get(run_id)
        if terms is None:
            doc = self._read_spec(run_id)
            if doc is None:
                return None
            terms = self._terms[run_id] = terms_of(run_id, doc)
        return terms

    def on_effects(self, fx: Effects) -> None:
        """Forget the runs that ended or were deleted; everything after a restore."""
        if fx.restored is not None:
            self._terms.clear()
            return
        for run_id in (*fx.runs_finished, *fx.runs_deleted):
            self._terms.pop(run_id, None)

    def clear(self) -> None:
        self._terms.clear()

    def keep_only(self, unfinished: Iterable[str]) -> None:
        """Drop the runs not ``unfinished`` (ended or deleted where no effect told us: under
        another leader), once they outnumber the unfinished ones; a loop over every
        unfinished run calls this with them, so the cache stays the size of that list."""
        keep = set(unfinished)
        if len(self._terms) > 2 * len(keep) + 64:
            self._terms = {run_id: t for run_id, t in self._terms.items() if run_id in keep}

    def __len__(self) -> int:
        return len(self._terms)
