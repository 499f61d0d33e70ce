"""What the DAG list adds to each DAG for the admin UI: the next fire time and the newest
runs (headers only: one short key scan per DAG, no task records)."""

from __future__ import annotations

from typing import Any

from kiok.core.cron import next_fire_ms
from kiok.master.iam import Grants
from kiok.master.views import iso
from kiok.security import actions, resources
from kiok.store.reader import StateReader


def next_fire_at(view: dict[str, Any], now_ms: int) -> str | None:
    """The DAG's next scheduled time after now; None without a schedule or while paused."""
    if not view["schedule"] or view["paused"]:
        return None
    try:
        return iso(next_fire_ms(view["schedule"], view["timezone"] or "UTC", now_ms))
    except (ValueError, KeyError, StopIteration):  # validated at registration; never fail a list
        return None


def last_runs(reader: StateReader, grants: Grants, dag_id: str, limit: int) -> list[dict[str, Any]]:
    headers = reader.dag_run_headers_newest(dag_id, limit)
    return [
        {
            "runId": h["runId"],
            "state": h["state"],
            "trigger": h["trigger"],
            "createdAt": iso(h["createdMs"]),
            "startedAt": iso(h["startedMs"]),
            "endedAt": iso(h["endedMs"]),
        }
        for h in headers
        if grants.allows(actions.LIST_RUNS, resources.run(dag_id, h["runId"]))
    ]
