"""Maintenance mode's effect on cron firing, as a pure function.

While maintenance mode is on, every interval that comes due is skipped for good: the
scheduler moves the DAG's watermark past it without creating a run, so it is not caught up
afterwards, not even with ``catchup: true``. Once it is off, intervals that fell inside the
last window (``sinceMs``..``untilMs``) are still skipped: the scheduler may not have looked
between a fire time and the switch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def split_fires(
    fire_times: tuple[int, ...], mode: Mapping[str, Any]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(to fire, to skip)`` of the due ``fire_times`` given the maintenance record ``mode``
    (``{"enabled", "sinceMs", "untilMs"}``)."""
    since = mode.get("sinceMs")
    if mode.get("enabled"):
        return (), fire_times
    until = mode.get("untilMs")
    if since is None or until is None:
        return fire_times, ()
    skip = tuple(t for t in fire_times if since <= t <= until)
    return tuple(t for t in fire_times if not since <= t <= until), skip
