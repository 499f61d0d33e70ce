"""Backfill: the schedule intervals a date range covers (pure: the caller passes ``now``).

An interval is ``[start, end)`` between two consecutive fire times of the DAG's cron; the
run for it is the one the scheduler would have created at ``start`` (its ``scheduledMs``, so
tasks see ``start`` as ``KIOK_SCHEDULED_TIME``). The range takes every interval whose start
lies in it: ``from`` inclusive, ``to`` inclusive (a bare date means the whole day), both in
the DAG's time zone unless they carry an offset. Intervals starting after ``now`` are left
to the scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from kiok.core.cron import load_zone, next_fire_ms
from kiok.errors import InvalidInput

__all__ = ["BackfillPlan", "backfill_intervals", "parse_bound"]


@dataclass(frozen=True)
class BackfillPlan:
    #: ``(start_ms, end_ms)`` per interval, oldest first.
    intervals: tuple[tuple[int, int], ...]
    #: Intervals in the range that start after now (not backfilled).
    future: int


#: The bounds a backfill range may have: from the epoch to a year that leaves the cron's
#: next fire times (up to decades apart) room before ``datetime``'s year 9999 ends.
EARLIEST_MS = 0
LATEST_MS = int(datetime(9000, 1, 1, tzinfo=UTC).timestamp() * 1000)


#: The dates a bound may name, as written (in whatever zone or offset it is in).
EARLIEST_DAY = date(1970, 1, 1)
LATEST_DAY = date(8999, 12, 31)


def parse_bound(text: str, tz: str, field: str, *, end: bool) -> int:
    """Epoch ms of a range bound: ``YYYY-MM-DD`` (for ``end``: the last ms of that day) or an
    ISO 8601 date-time (without an offset: in ``tz``), dated 1970-01-01 to 8999-12-31 as
    written. The range is checked on that date, not on the instant, so both ends are valid
    in every time zone: an instant before the epoch (1970-01-01 in Berlin starts at
    1969-12-31T23:00Z) is taken as the epoch, one past ``LATEST_MS`` as the last ms before it.
    ``InvalidInput`` names ``field``."""
    zone = load_zone(tz)
    day: date | None = None
    try:  # every date-only form (2026-01-31, 20260131, 2026-W05-6) is a whole day
        day = written = date.fromisoformat(text)
    except ValueError:
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            written = dt.date()
        except ValueError:
            raise InvalidInput(
                f"{field}: {text!r} is not a date (YYYY-MM-DD) or an ISO 8601 date-time"
            ) from None
    if not EARLIEST_DAY <= written <= LATEST_DAY:
        raise InvalidInput(f"{field}: {text!r} is out of range (1970-01-01 to 8999-12-31)")
    if day is not None:
        moment = datetime.combine(day + timedelta(days=1) if end else day, time(), zone)
        ms = int(moment.timestamp() * 1000) - (1 if end else 0)
    else:
        ms = int((dt if dt.tzinfo else dt.replace(tzinfo=zone)).timestamp() * 1000)
    return min(max(ms, EARLIEST_MS), LATEST_MS - 1)


def backfill_intervals(
    cron: str, tz: str, from_ms: int, to_ms: int, now_ms: int, *, max_runs: int
) -> BackfillPlan:
    """The intervals starting in ``[from_ms, to_ms]`` and not after ``now_ms``. Raises
    ``InvalidInput`` when ``to`` is before ``from`` or there are more than ``max_runs``."""
    if to_ms < from_ms:
        raise InvalidInput("to: the range ends before it starts")
    fires: list[int] = []
    future = 0
    nxt = next_fire_ms(cron, tz, from_ms - 1)
    while nxt <= to_ms:
        if nxt > now_ms:
            future += 1
            if future > max_runs:  # the rest is the scheduler's; no need to count them all
                break
        else:
            fires.append(nxt)
            if len(fires) > max_runs:
                raise InvalidInput(
                    f"the range covers more than {max_runs} intervals "
                    "(kiok.scheduler.backfill.max.runs): backfill a shorter range"
                )
        nxt = next_fire_ms(cron, tz, nxt)
    ends = [*fires[1:], next_fire_ms(cron, tz, fires[-1])] if fires else []
    return BackfillPlan(tuple(zip(fires, ends, strict=True)), future)
