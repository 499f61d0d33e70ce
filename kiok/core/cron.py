"""Cron firing as pure functions over epoch milliseconds.

Schedules are 5-field cron expressions evaluated in an IANA time zone (cronsim handles the
DST gap and overlap: a 02:30 job in Europe/Berlin fires at 03:00 on the spring-forward day
and once on the fall-back day). A scheduled run is identified by (DAG, fire time), so the
caller may propose the same fire time twice and get one run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

#: Upper bound on fire times enumerated in one call, so a '* * * * *' DAG that was down for
#: a year does not make the scheduler walk half a million minutes.
_MAX_ENUMERATION = 100_000


#: What an IANA zone name looks like: ``Area/Location`` segments of letters, digits, ``_``,
#: ``-`` and ``+`` (``Etc/GMT+5``). No dots, so no relative path out of the zone directory.
_IANA_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
#: Files in a zone directory that are not IANA zones but a copy of the host's choice:
#: ``localtime`` is a link to ``/etc/localtime``, ``posixrules`` the rules for POSIX TZ
#: strings; ``posix/`` and ``right/`` are trees some hosts have and others lack (``right/``
#: also counts leap seconds, which epoch milliseconds do not).
_HOST_NAMES = frozenset({"localtime", "posixrules"})
_HOST_TREES = ("posix/", "right/")
#: Bounds on a zone name given by a user. The longest IANA names are about 30 characters
#: in 3 parts (``America/Argentina/ComodRivadavia``); a longer one is no zone, and resolving
#: it costs ``ZoneInfo`` one nested package import per part (a recursion error past a few
#: hundred).
MAX_ZONE_NAME_CHARS = 64
MAX_ZONE_NAME_PARTS = 4


def host_dependent_zone(name: str) -> bool:
    """True when ``name`` means a different zone (or none) depending on the machine: a
    schedule in it would move when the leader fails over to a master set up otherwise."""
    return name in _HOST_NAMES or name.startswith(_HOST_TREES) or _IANA_NAME.fullmatch(name) is None


def parse_timezone(name: str) -> ZoneInfo:
    """The zone for an IANA name given by a user (a DAG being registered); ``ValueError``
    naming it when it is unknown or depends on the host (``localtime``, a path).

    Zones of DAGs already stored go through ``load_zone``, which accepts what was accepted
    when they were registered, so tightening this check strands no stored DAG."""
    if len(name) > MAX_ZONE_NAME_CHARS or name.count("/") >= MAX_ZONE_NAME_PARTS:
        raise ValueError(
            f"time zone {_shown(name)!r} is not an IANA name: those have at most "
            f"{MAX_ZONE_NAME_CHARS} characters in {MAX_ZONE_NAME_PARTS} '/'-separated parts"
        )
    if host_dependent_zone(name):
        raise ValueError(
            f"time zone {name!r} depends on the host, not the IANA database, so masters could "
            "disagree on it; use an IANA name such as 'Europe/Berlin'"
        )
    return load_zone(name)


def load_zone(name: str) -> ZoneInfo:
    """The zone of a stored DAG or run, by any name ``ZoneInfo`` resolves (``localtime``
    included, as earlier versions accepted it); ``ValueError`` with the name when unknown,
    also for a name the zone lookup cannot even walk (too deep for the import machinery,
    too long for a file name)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, RecursionError, OSError) as e:
        raise ValueError(
            f"unknown time zone {_shown(name)!r} (use an IANA name such as 'Europe/Berlin')"
        ) from e


def _shown(name: str) -> str:
    """``name`` cut to a length an error message can quote."""
    return name if len(name) <= MAX_ZONE_NAME_CHARS else name[:MAX_ZONE_NAME_CHARS] + "..."


def validate_cron(expr: str, *, stored: bool = False) -> None:
    """Raise ``ValueError`` saying what is wrong unless ``expr`` is a valid 5-field cron.

    A step larger than its field (``*/1000`` minutes) is refused: cronsim reads it as the
    field's first value alone, so the schedule would not fire as written (hourly, there).
    ``stored``: an expression already stored (a DAG registered before such steps were
    refused) is checked as cronsim reads it, so tightening this strands no stored DAG."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"cron {expr!r} must have 5 fields (minute hour day month weekday), has {len(fields)}"
        )
    problem = None if stored else _step_problem(fields)
    if problem is not None:
        shown = expr if len(expr) <= 80 else expr[:77] + "..."
        raise ValueError(f"invalid cron {shown!r}: {problem}")
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as e:
        raise ValueError(f"invalid cron {expr!r}: {e}") from e


#: Each field of a 5-field cron: its name and how many values it has (day-of-week has 0-7,
#: 0 and 7 both Sunday). A step up to that many picks the first value alone at most.
_FIELD_SIZES = (("minute", 60), ("hour", 24), ("day-of-month", 31), ("month", 12), ("day-of-week", 7))


def _step_problem(fields: list[str]) -> str | None:
    """What is wrong with the first step (``*/N``, ``a-b/N``, ``a/N``) larger than its field,
    or None; a step that is no number is left to cronsim."""
    for text, (name, size) in zip(fields, _FIELD_SIZES, strict=True):
        for term in text.split(","):
            step = term.partition("/")[2]
            if not (step.isascii() and step.isdigit()):
                continue
            digits = step.lstrip("0")
            if len(digits) > 2 or int(digits or "0") > size:  # not int(step): 5,000 digits raise
                shown = step if len(step) <= 24 else f"{step[:12]}... ({len(step)} digits)"
                return f"{name} step {shown} is larger than the field ({size} values)"
    return None


def next_fire_ms(expr: str, tz: str, after_ms: int) -> int:
    """The first fire time strictly after ``after_ms``."""
    zone = load_zone(tz)
    start = datetime.fromtimestamp(after_ms / 1000, tz=UTC).astimezone(zone)
    it = CronSim(expr, start)
    fire = next(it)
    ms = int(fire.timestamp() * 1000)
    while ms <= after_ms:  # cronsim starts at the next whole minute; guard sub-ms edges
        ms = int(next(it).timestamp() * 1000)
    return ms


def schedule_of(dag: Mapping[str, Any]) -> tuple[str, str] | None:
    """(cron, zone) a stored ``dag`` section fires on, whitespace in the cron normalised;
    None for a manual-only DAG."""
    expr = dag.get("schedule")
    if not expr:
        return None
    return " ".join(str(expr).split()), str(dag.get("timezone") or "UTC")


def watermark_on_register(
    old_dag: Mapping[str, Any] | None, old_watermark_ms: int, new_dag: Mapping[str, Any], at_ms: int
) -> int:
    """The schedule watermark of a DAG registered at ``at_ms`` (``old_dag`` None: first time).

    A schedule counts from when it appears, as a new DAG does: one added to a manual-only DAG,
    or changed to another cron or zone, must not catch up intervals of a schedule the DAG did
    not have then (a month manual-only, then ``0 * * * *`` with ``catchup: true``, queued 24
    runs at once). The watermark never moves back, so runs already made are not made again.
    An unchanged schedule keeps its progress: what a pause or downtime missed is caught up."""
    if old_dag is None:
        return at_ms
    new = schedule_of(new_dag)
    if new is None or new == schedule_of(old_dag):
        return old_watermark_ms
    return max(old_watermark_ms, at_ms)


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
    zone = load_zone(tz)
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


def fit_to_room(fire_times: tuple[int, ...], watermark_ms: int, room: int) -> tuple[tuple[int, ...], int]:
    """(fire times to create runs for now, watermark to record) when only ``room`` more runs
    of the DAG may wait to start (``kiok.scheduler.max.pending.runs.per.dag``).

    As in Airflow, a DAG at its limit gets no more runs, but its intervals are not lost: the
    watermark stops just before the first fire time left out, so they come due again once
    runs start, oldest first, and the DAG's catch-up rules (catchup off: only the newest) pick
    what runs then. ``watermark_ms`` is where it goes when everything fits. With no room the
    caller should propose nothing, so intervals pile up silently rather than being dropped (and
    logged) one by one while the DAG waits."""
    if len(fire_times) <= room:
        return fire_times, watermark_ms
    now = fire_times[: max(0, room)]
    return now, fire_times[len(now)] - 1


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
