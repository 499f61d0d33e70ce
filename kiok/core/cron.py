"""Cron firing as pure functions over epoch milliseconds.

Schedules are 5-field cron expressions evaluated in an IANA time zone (cronsim handles the
DST gap and overlap: a 02:30 job in Europe/Berlin fires at 03:00 on the spring-forward day
and once on the fall-back day). A scheduled run is identified by (DAG, fire time), so the
caller may propose the same fire time twice and get one run.
"""

from __future__ import annotations

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


def due_fires(
    expr: str, tz: str, watermark_ms: int, now_ms: int, *, catchup: bool, max_runs: int
) -> DueFires:
    """Fire times in ``(watermark_ms, now_ms]``.

    With ``catchup`` every missed interval gets a run, at most ``max_runs`` of them, the newest
    kept; without it only the most recent due interval runs (as Airflow does) and older ones
    are skipped. The watermark always moves to ``now_ms`` so nothing is considered twice.
    """
    zone = parse_timezone(tz)
    start = datetime.fromtimestamp(watermark_ms / 1000, tz=UTC).astimezone(zone)
    due: list[int] = []
    total = 0
    for fire in CronSim(expr, start):
        ms = int(fire.timestamp() * 1000)
        if ms <= watermark_ms:
            continue
        if ms > now_ms or total >= _MAX_ENUMERATION:
            break
        total += 1
        due.append(ms)
        keep = max_runs if catchup else 1
        if len(due) > keep:
            due.pop(0)
    dropped_count = total - len(due)
    dropped = None
    if dropped_count > 0:
        first_dropped = _nth_fire_after(expr, zone, watermark_ms)
        last_dropped = due[0] - 1 if due else now_ms
        dropped = (
            first_dropped,
            _last_fire_at_or_before(expr, zone, watermark_ms, last_dropped),
            dropped_count,
        )
    return DueFires(tuple(due), dropped, max(watermark_ms, now_ms))


def _nth_fire_after(expr: str, zone: ZoneInfo, after_ms: int) -> int:
    start = datetime.fromtimestamp(after_ms / 1000, tz=UTC).astimezone(zone)
    for fire in CronSim(expr, start):
        ms = int(fire.timestamp() * 1000)
        if ms > after_ms:
            return ms
    raise AssertionError("cron without fire times")  # pragma: no cover - cronsim iterates forever


def _last_fire_at_or_before(expr: str, zone: ZoneInfo, after_ms: int, limit_ms: int) -> int:
    last = after_ms
    start = datetime.fromtimestamp(max(after_ms, limit_ms - 366 * 86_400_000) / 1000, tz=UTC).astimezone(zone)
    for fire in CronSim(expr, start):
        ms = int(fire.timestamp() * 1000)
        if ms > limit_ms:
            break
        if ms > after_ms:
            last = ms
    return last
