"""Cron firing as pure functions over epoch milliseconds.

Schedules are 5-field cron expressions evaluated in an IANA time zone (cronsim handles the
DST gap and overlap: a 02:30 job in Europe/Berlin fires at 03:00 on the spring-forward day
and once on the fall-back day). A scheduled run is identified by (DAG, fire time), so the
caller may propose the same fire time twice and get one run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

#: Upper bound on fire times enumerated in one call, so a '* * * * *' DAG that was down for
#: a year does not make the scheduler walk half a million minutes.
_MAX_ENUMERATION = 100_000


def parse_timezone(name: str) -> ZoneInfo:
    """The zone for an IANA name; ``ValueError`` with the name when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin')") from e


def validate_cron(expr: str) -> None:
    """Raise ``ValueError`` saying what is wrong unless ``expr`` is a valid 5-field cron."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"cron {expr!r} must have 5 fields (minute hour day month weekday), has {len(fields)}"
        )
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as e:
        raise ValueError(f"invalid cron {expr!r}: {e}") from e


def next_fire_ms(expr: str, tz: str, after_ms: int) -> int:
    """The first fire time strictly after ``after_ms``."""
    zone = parse_timezone(tz)
    start = datetime.fromtimestamp(after_ms / 1000, tz=UTC).astimezone(zone)
    it = CronSim(expr, start)
    fire = next(it)
    ms = int(fire.timestamp() * 1000)
    while ms <= after_ms:  # cronsim starts at the next whole minute; guard sub-ms edges
        ms = int(next(it).timestamp() * 1000)
    return ms


@dataclass(frozen=True)
class DueFires:
    """What the scheduler should create now for one DAG."""

    #: Fire times to create runs for, oldest first.
    fire_times: tuple[int, ...]
    #: Fire times that were due but dropped (catch-up cap, or catchup off): (first, last, count).
    dropped: tuple[int, int, int] | None
    #: The new watermark: every fire time <= it has been considered.
    watermark_ms: int
    #: False when more fire times were missed than are enumerated (``_MAX_ENUMERATION``): the
    #: dropped count is then a lower bound.
    dropped_exact: bool = True


def due_fires(
    expr: str, tz: str, watermark_ms: int, now_ms: int, *, catchup: bool, max_runs: int
) -> DueFires:
    """Fire times in ``(watermark_ms, now_ms]``.

    With ``catchup`` every missed interval gets a run, at most ``max_runs`` of them, the newest
    kept; without it only the most recent due interval runs (as Airflow does) and older ones
    are skipped. The watermark always moves to ``now_ms`` so nothing is considered twice.
    When more than ``_MAX_ENUMERATION`` fire times are due (a '* * * * *' DAG paused for
    months), the newest are still the ones kept: they are looked for backwards from now.
    """
    zone = parse_timezone(tz)
    keep = min(max(1, max_runs), _MAX_ENUMERATION) if catchup else 1
    due: list[int] = []
    first_dropped: int | None = None
    last_dropped = 0
    count = 0

    def take(ms: int) -> None:
        nonlocal first_dropped, last_dropped, count
        due.append(ms)
        if len(due) > keep:
            gone = due.pop(0)
            if first_dropped is None:
                first_dropped = gone
            last_dropped = gone
            count += 1

    last_seen = watermark_ms
    capped = False
    for ms in _fires_after(expr, zone, watermark_ms):
        if ms > now_ms:
            break
        if count + len(due) >= _MAX_ENUMERATION:
            capped = True
            break
        take(ms)
        last_seen = ms
    exact = not capped
    if capped:
        # Too many to walk: the newest ``keep`` lie in the shortest window (lo, now] holding
        # that many; the fires between ``last_seen`` and ``lo`` are dropped uncounted.
        span = 3_600_000
        while True:
            lo = max(last_seen, now_ms - span)
            window = _fires_between(expr, zone, lo, now_ms)
            if len(window) >= keep or lo == last_seen:
                break
            span *= 2
        if lo > last_seen:  # a gap: everything walked so far is older, dropped
            if first_dropped is None and due:
                first_dropped = due[0]
            last_dropped = due[-1] if due else last_dropped
            count += len(due)
            due.clear()
        else:
            exact = True
        for ms in window:
            take(ms)
    dropped = None if first_dropped is None else (first_dropped, last_dropped, count)
    return DueFires(tuple(due), dropped, max(watermark_ms, now_ms), dropped_exact=exact)


def _fires_after(expr: str, zone: ZoneInfo, after_ms: int) -> Iterator[int]:
    """Fire times strictly after ``after_ms``, in order, as epoch ms."""
    start = datetime.fromtimestamp(after_ms / 1000, tz=UTC).astimezone(zone)
    for fire in CronSim(expr, start):
        ms = int(fire.timestamp() * 1000)
        if ms > after_ms:
            yield ms


def _fires_between(expr: str, zone: ZoneInfo, lo_ms: int, hi_ms: int) -> list[int]:
    """The fire times in ``(lo_ms, hi_ms]``, oldest first."""
    out: list[int] = []
    for ms in _fires_after(expr, zone, lo_ms):
        if ms > hi_ms:
            break
        out.append(ms)
    return out
