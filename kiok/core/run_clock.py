"""When a run's clock started, for its ``run_timeout`` and its ``sla`` (pure: reads a run header).

A run's clock starts when it gets a driver (``startedMs``); a re-run starts it again when the
re-run gets its own (``lastRerun.startedMs``). Until then the run waits, since it was asked for
(``createdMs``, or the re-run's ``lastRerun.atMs``): the run timeout does not count that wait,
the SLA does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kiok.core.states import RunState

__all__ = ["requested_ms", "started_ms"]


def started_ms(run: Mapping[str, Any]) -> int | None:
    """When the run, or its last re-run, got its driver; None while it waits for one."""
    started = run.get("startedMs")
    rerun = run.get("lastRerun")
    if started is None:
        return None  # never had a driver
    if rerun is None:
        return int(started)
    if "startedMs" in rerun:
        return int(rerun["startedMs"])
    if run.get("state") == RunState.PENDING.value or rerun.get("freshSla"):
        return None  # the re-run waits its turn (or was cancelled before it got a driver)
    return max(int(started), int(rerun["atMs"]))  # re-run by an earlier version: RUNNING at once


def requested_ms(run: Mapping[str, Any]) -> int:
    """When the run was asked for: created, or its last re-run requested."""
    rerun = run.get("lastRerun")
    return int(run["createdMs"] if rerun is None else rerun["atMs"])
