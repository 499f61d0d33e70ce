"""The schedule interval a run stands for: ``${run.interval.start}``/``${run.interval.end}``
and ``KIOK_INTERVAL_START``/``KIOK_INTERVAL_END`` for its tasks (pure: no clock, no I/O).

A scheduled, catch-up or backfilled run created for fire time ``T`` stands for
``[T, next fire after T)`` (as ``kiok.core.backfill`` defines a backfill's intervals), so a
nightly DAG's run at 2024-05-01T02:00Z covers 2024-05-01T02:00Z to 2024-05-02T02:00Z. A
manual run stands for no interval of the schedule: both ends are its trigger time (as
Airflow does for a DAG without a schedule), so a task can always use the two values.
"""

from __future__ import annotations

from kiok.core.cron import next_fire_ms
from kiok.core.timefmt import iso_utc

__all__ = ["RUN_VALUE_NAMES", "interval_env", "interval_values", "run_interval"]

#: The names ``${run.<name>}`` may use.
RUN_VALUE_NAMES = ("interval.start", "interval.end")


def run_interval(schedule: str | None, tz: str, scheduled_ms: int | None, created_ms: int) -> tuple[int, int]:
    """``(start_ms, end_ms)`` of the run: its fire time and the next one after it, or its
    trigger time twice for a run the scheduler did not create."""
    if scheduled_ms is None or not schedule:
        return created_ms, created_ms
    return scheduled_ms, next_fire_ms(schedule, tz, scheduled_ms)


def interval_values(interval: tuple[int, int]) -> dict[str, str]:
    """``${run.*}`` name -> value: ISO 8601 UTC to the second (``2024-05-01T02:00:00Z``)."""
    return {"interval.start": iso_utc(interval[0]), "interval.end": iso_utc(interval[1])}


def interval_env(interval: tuple[int, int]) -> dict[str, str]:
    """The same values as environment variables of the task process."""
    values = interval_values(interval)
    return {"KIOK_INTERVAL_START": values["interval.start"], "KIOK_INTERVAL_END": values["interval.end"]}
