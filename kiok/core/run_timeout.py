"""The DAG's ``run_timeout``: which unfinished runs are overdue (pure: ``now`` is passed in).

A run's clock starts when it first got a driver (``startedMs``): a run waiting for
``max_active_runs`` or a worker has not started. A re-run starts it again when the re-run
gets its driver (``lastRerun.startedMs``). ``kiok.core.run_clock`` decides, as for the SLA.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kiok.core.run_clock import started_ms

__all__ = ["Overdue", "overdue_runs", "short_duration"]


@dataclass(frozen=True)
class Overdue:
    run_id: str
    reason: str


def short_duration(ms: int) -> str:
    """``30m``, ``2h``, ``90s``, ``1500ms``: the largest unit that divides it."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def overdue_runs(runs: Iterable[Mapping[str, Any]], now_ms: int) -> tuple[list[Overdue], int | None]:
    """Runs (headers of unfinished runs) past their ``runTimeoutMs``, and the earliest
    deadline still ahead (None: nothing to watch)."""
    out: list[Overdue] = []
    next_deadline: int | None = None
    for run in runs:
        limit = run.get("runTimeoutMs")
        start = started_ms(run)
        if limit is None or start is None or run.get("failReason") or run.get("cancel"):
            continue
        deadline = start + int(limit)
        if deadline <= now_ms:
            out.append(Overdue(run["runId"], f"run timed out after {short_duration(int(limit))}"))
        elif next_deadline is None or deadline < next_deadline:
            next_deadline = deadline
    return out, next_deadline
