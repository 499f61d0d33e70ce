"""What the DAG list adds to each DAG for the admin UI: the next fire time and the newest
runs (summaries kept between requests by ``kiok.master.recent_runs``, no task records)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kiok.core.cron import next_fire_ms
from kiok.master.recent_runs import RecentRuns
from kiok.master.views import iso
from kiok.security import resources


def next_fire_at(view: dict[str, Any], now_ms: int) -> str | None:
    """The DAG's next scheduled time after now; None without a schedule or while paused."""
    if not view["schedule"] or view["paused"]:
        return None
    try:
        return iso(next_fire_ms(view["schedule"], view["timezone"] or "UTC", now_ms))
    except (ValueError, KeyError, StopIteration):  # validated at registration; never fail a list
        return None


def last_runs(
    recent: RecentRuns, may_list: Callable[[str], bool], dag_id: str, limit: int
) -> list[dict[str, Any]]:
    """The DAG's newest ``limit`` runs, newest first, those ``may_list`` allows (a
    ``Grants.checker(actions.LIST_RUNS)``, made once per request)."""
    return [dict(r) for r in recent.newest(dag_id, limit) if may_list(resources.run(dag_id, r["runId"]))]
