"""Edges of the cron scheduler and run creation (the review of session 17): DST, cron edge cases, catch-up
after long downtime, backfill bounds. Pure functions only: no processes, no sleeps."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest

from kiok.config import Settings
from kiok.core import cron
from kiok.core.backfill import backfill_intervals, parse_bound
from kiok.core.cron import due_fires, next_fire_ms
from kiok.core.retry import fail_event
from kiok.core.states import TaskRecord, TaskState
from kiok.core.transitions import TaskEvent, TaskEventKind, apply_task_event
from kiok.dag.load import compiled_spec, spec_from_json
from kiok.dag.spec import TaskSpec
from kiok.errors import DagValidationError
from kiok.ids import TaskId
from kiok.master.node import MasterNode
from kiok.store import commands as c
from tests.scheduler_node import Clock, ms, scheduler_node

DAY = 86_400_000


def iso(value: int) -> str:
    return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fires(expr: str, tz: str, start: str, end: str) -> list[str]:
    due = due_fires(expr, tz, ms(start), ms(end), catchup=True, max_runs=10_000)
    return [iso(f) for f in due.fire_times]


# --- DST: what docs/dags.md "Time zones and DST" promises -----------------------------------


@pytest.mark.parametrize(
    ("tz", "day", "expected"),
    [
        # spring forward: 02:30 does not exist; once, at 03:00 local
        ("Europe/Berlin", "2024-03-31", ["2024-03-31T01:00:00Z"]),
        ("America/New_York", "2024-03-10", ["2024-03-10T07:00:00Z"]),
        # fall back: Berlin repeats 02:00-03:00, once in the first copy
        ("Europe/Berlin", "2024-10-27", ["2024-10-27T00:30:00Z"]),
        # New York repeats 01:00-02:00, so 02:30 happens once anyway
        ("America/New_York", "2024-11-03", ["2024-11-03T07:30:00Z"]),
    ],
)
def test_a_fixed_time_on_dst_days_fires_exactly_once(tz: str, day: str, expected: list[str]) -> None:
    got = fires("30 2 * * *", tz, f"{day}T00:00:00+00:00", f"{day}T23:59:59+00:00")
    assert got == expected


def test_new_york_fall_back_0130_fires_once_not_in_both_copies() -> None:
    got = fires("30 1 * * *", "America/New_York", "2024-11-03T00:00:00+00:00", "2024-11-04T00:00:00+00:00")
    assert got == ["2024-11-03T05:30:00Z"]  # 01:30 EDT; not again at 01:30 EST (06:30Z)


def test_ticking_every_minute_across_dst_fires_what_one_enumeration_and_backfill_do() -> None:
    """The scheduler sees a DST day tick by tick; a backfill chains ``next_fire_ms``: all three
    must agree, or a DST day gets a duplicate or a gap depending on who created the run."""
    tz, start, end = "Europe/Berlin", ms("2024-10-26T22:00:00+00:00"), ms("2024-10-27T03:00:00+00:00")
    for expr in ("30 2 * * *", "*/30 2 * * *", "0 * * * *", "*/7 * * * *"):
        bulk = list(due_fires(expr, tz, start, end, catchup=True, max_runs=10_000).fire_times)
        ticked: list[int] = []
        wm = start
        for now in range(start + 60_000, end + 1, 60_000):
            d = due_fires(expr, tz, wm, now, catchup=True, max_runs=10_000)
            ticked += d.fire_times
            wm = d.watermark_ms
        chained, nxt = [], next_fire_ms(expr, tz, start)
        while nxt <= end:
            chained.append(nxt)
            nxt = next_fire_ms(expr, tz, nxt)
        assert bulk == ticked == chained, expr
        assert len(set(bulk)) == len(bulk), expr


# --- cron edge cases -------------------------------------------------------------------------


def test_cron_edge_cases_follow_vixie_cron() -> None:
    def first(expr: str, n: int = 4) -> list[str]:
        out, t = [], ms("2024-01-01T00:00:00+00:00")
        for _ in range(n):
            t = next_fire_ms(expr, "UTC", t)
            out.append(iso(t))
        return out

    # day of month AND day of week both restricted: either matches (Vixie OR)
    assert first("0 0 1 * MON", 5)[-1] == "2024-02-01T00:00:00Z"
    assert first("5-55/10 * * * *", 6) == [f"2024-01-01T00:{m:02d}:00Z" for m in (5, 15, 25, 35, 45, 55)]
    assert first("*/7 * * * *", 9)[-2:] == ["2024-01-01T00:56:00Z", "2024-01-01T01:00:00Z"]
    assert first("0 0 29 2 *", 2) == ["2024-02-29T00:00:00Z", "2028-02-29T00:00:00Z"]
    assert first("0 0 31 * *", 2) == ["2024-01-31T00:00:00Z", "2024-03-31T00:00:00Z"]
    assert first("0 0 L 2 *", 2) == ["2024-02-29T00:00:00Z", "2025-02-28T00:00:00Z"]
    assert first("0 9 * * 5#2", 1) == ["2024-01-12T09:00:00Z"]


# --- catch-up after a long pause ---------------------------------------------------------------


def test_catchup_off_after_a_long_pause_runs_the_most_recent_interval() -> None:
    """A '* * * * *' DAG paused for three months and unpaused: with catchup off, docs/dags.md
    promises one run for the most recent interval. The enumeration cap (100,000 fire times)
    used to stop the walk ~69 days in, so the one run was for an interval three weeks old."""
    wm, now = ms("2024-01-01T00:00:00+00:00"), ms("2024-04-01T00:00:30+00:00")
    due = due_fires("* * * * *", "UTC", wm, now, catchup=False, max_runs=24)
    assert [iso(f) for f in due.fire_times] == ["2024-04-01T00:00:00Z"]
    assert due.watermark_ms == now
    assert due.dropped is not None and due.dropped[0] == ms("2024-01-01T00:01:00+00:00")
    assert due.dropped[2] >= 100_000


def test_catchup_on_after_a_long_pause_keeps_the_newest_intervals() -> None:
    wm, now = ms("2024-01-01T00:00:00+00:00"), ms("2024-04-01T00:00:00+00:00")
    due = due_fires("* * * * *", "UTC", wm, now, catchup=True, max_runs=3)
    assert [iso(f) for f in due.fire_times] == [
        "2024-03-31T23:58:00Z",
        "2024-03-31T23:59:00Z",
        "2024-04-01T00:00:00Z",
    ]


def test_catchup_past_the_cap_with_a_bursty_cron_still_keeps_the_newest() -> None:
    """Fires only in the midnight hour: the newest ones lie far from now."""
    wm, now = ms("2018-01-01T00:00:00+00:00"), ms("2024-06-01T12:00:00+00:00")
    due = due_fires("* 0 * * *", "UTC", wm, now, catchup=True, max_runs=2)
    assert [iso(f) for f in due.fire_times] == ["2024-06-01T00:58:00Z", "2024-06-01T00:59:00Z"]


def test_the_logged_range_of_dropped_intervals_ends_at_the_last_dropped_one() -> None:
    """A leap-day DAG down for ten years: 2016 and 2020 dropped, 2024 runs. The log said the
    dropped range ended at the old watermark (2015-01-01), before it began."""
    due = due_fires(
        "0 0 29 2 *", "UTC", ms("2015-01-01T00:00:00+00:00"), ms("2025-01-01T00:00:00+00:00"),
        catchup=False, max_runs=24,
    )  # fmt: skip
    assert [iso(f) for f in due.fire_times] == ["2024-02-29T00:00:00Z"]
    assert due.dropped == (ms("2016-02-29T00:00:00+00:00"), ms("2020-02-29T00:00:00+00:00"), 2)
    assert due.dropped_exact


def test_catchup_within_the_cap_is_unchanged() -> None:
    wm, now = ms("2024-01-01T00:00:00+00:00"), ms("2024-01-01T10:00:00+00:00")
    due = due_fires("0 * * * *", "UTC", wm, now, catchup=True, max_runs=4)
    assert [iso(f) for f in due.fire_times] == [f"2024-01-01T{h:02d}:00:00Z" for h in (7, 8, 9, 10)]
    assert due.dropped == (ms("2024-01-01T01:00:00+00:00"), ms("2024-01-01T06:00:00+00:00"), 6)
    assert due_fires("0 * * * *", "UTC", wm, wm + 1000, catchup=True, max_runs=4).dropped is None


# --- backfill bounds ---------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["2026-01-31", "20260131", "2026-W05-6"])
def test_a_backfill_to_date_in_any_iso_date_form_takes_the_whole_day(written: str) -> None:
    """docs/dags.md: `--to` is inclusive, a bare date is the whole day. The basic ISO form
    20260131 was read as the instant 2026-01-31T00:00, so Jan 31's 02:00 run was left out."""
    to = parse_bound(written, "Europe/Berlin", "to", end=True)
    assert to == ms("2026-02-01T00:00:00+01:00") - 1
    plan = backfill_intervals(
        "0 2 * * *", "Europe/Berlin", parse_bound("2026-01-30", "Europe/Berlin", "from", end=False), to,
        ms("2026-03-01T00:00:00+00:00"), max_runs=1000,
    )  # fmt: skip
    assert [iso(s) for s, _ in plan.intervals] == ["2026-01-30T01:00:00Z", "2026-01-31T01:00:00Z"]


def test_a_backfill_bound_takes_a_lower_case_z() -> None:
    bound = parse_bound("2026-01-31T00:00:00z", "Europe/Berlin", "to", end=True)
    assert bound == ms("2026-01-31T00:00:00+00:00")


# --- the scheduler loop, in process (real RocksDB store in tmp_path, manual clock) ---------------


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[MasterNode, Clock]]:
    async with scheduler_node(tmp_path) as made:
        yield made


def spec(dag_id: str, schedule: str | None, *, tz: str = "UTC", catchup: bool = False) -> dict[str, object]:
    dag: dict[str, object] = {"id": dag_id, "timezone": tz, "catchup": catchup, "max_active_runs": 100}
    if schedule:
        dag["schedule"] = schedule
    return {"dag": dag, "tasks": [{"id": "t", "type": "shell", "script": "true"}]}


def runs_of(n: MasterNode, dag_id: str) -> list[dict[str, Any]]:
    return list(reversed(n.reader.runs(dag_id=dag_id, limit=500)[0]))


async def test_a_dag_whose_zone_this_master_lacks_does_not_stop_every_other_schedule(
    node: tuple[MasterNode, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DAG registered on a master with newer tzdata (Europe/Kyiv, America/Ciudad_Juarez), a
    restored backup, or any other per-DAG error: the tick raised on that DAG and no DAG after
    it was ever scheduled again ("scheduler tick failed" every second)."""
    n, clock = node
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=spec("a_kyiv", "0 * * * *", tz="Europe/Kyiv")))
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=spec("b_utc", "0 * * * *")))

    def older_tzdata(key: str) -> ZoneInfo:
        if key == "Europe/Kyiv":
            raise ZoneInfoNotFoundError(key)
        return ZoneInfo(key)

    monkeypatch.setattr("kiok.core.cron.ZoneInfo", older_tzdata)
    clock.ms += 3_600_000
    await n.scheduler.tick()
    assert [r["scheduledMs"] for r in runs_of(n, "b_utc")] == [ms("2026-03-28T13:00:00+00:00")]
    assert runs_of(n, "a_kyiv") == []


async def test_adding_a_schedule_to_a_manual_only_dag_does_not_catch_up_before_it(
    node: tuple[MasterNode, Clock],
) -> None:
    """docs/dags.md: missed intervals come from a master that was down or a paused DAG. A DAG
    that was manual-only for a month and is re-registered with an hourly schedule and
    ``catchup: true`` gets 24 catch-up runs at once, for hours it had no schedule."""
    n, clock = node
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=spec("etl", None, catchup=True)))
    clock.ms += 30 * 86_400_000
    await n.scheduler.tick()
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=spec("etl", "0 * * * *", catchup=True)))
    await n.scheduler.tick()
    assert runs_of(n, "etl") == []


async def test_scheduled_runs_do_not_queue_past_the_pending_limit(tmp_path: Path) -> None:
    """A '* * * * *' DAG with max_active_runs: 1 whose run hangs (or no worker has its labels)
    queues 1,440 PENDING runs a day, for ever; Airflow creates no run past max_active_runs."""
    clock = Clock(ms("2026-03-28T12:00:00+00:00"))
    settings = Settings.load(
        overrides={"kiok.base.data.dir": str(tmp_path), "kiok.scheduler.max.pending.runs.per.dag": 3}
    )
    n = MasterNode(settings, clock)
    await n.open_stores()
    try:
        await n.auth.bootstrap("admin", "Some-Password-1")
        await n.log.propose(c.RegisterDag(at_ms=clock(), spec=spec("busy", "* * * * *")))
        for _ in range(6):
            clock.ms += 60_000
            await n.scheduler.tick()
        assert len(runs_of(n, "busy")) <= 3
    finally:
        n.kv.close()
        n.joblog.close()


def test_a_host_dependent_zone_name_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        cron.parse_timezone("localtime")


def test_a_rerun_task_gets_its_retries_again() -> None:
    """``retries: 2``: attempts 1-3 fail, the run FAILS; the user re-runs it (same run, attempt
    numbers kept). Airflow's clear gives the task its retries again; in kiok the re-run's
    attempt 4 failed for good at once (and a retry would have waited 8 x retry_delay)."""
    task = TaskSpec(id=TaskId("t"), retries=2, retry_delay_ms=10_000)
    rec = TaskRecord(state=TaskState.FAILED, attempt=3)
    rec, _ = apply_task_event(rec, TaskEvent(TaskEventKind.RERUN, 1))
    rec, _ = apply_task_event(rec, TaskEvent(TaskEventKind.READY, 2))
    rec, _ = apply_task_event(rec, TaskEvent(TaskEventKind.START, 3))
    assert (rec.attempt, rec.attempt_base) == (4, 3)
    ev = fail_event(
        task, rec.attempt - rec.attempt_base, 4, cap_ms=3_600_000, exit_code=1
    )  # as the driver does
    assert ev.retry_at_ms == 4 + 10_000
    assert TaskRecord.from_dict(rec.to_dict()) == rec  # stored and sent with the run


def test_a_catchup_cap_of_zero_still_runs_the_interval_that_is_due() -> None:
    """kiok.scheduler.catchup.max.runs has no lower bound: set to 0 (meaning "no catch-up"),
    every catchup: true DAG stopped firing at all, even on time."""
    wm = ms("2026-01-01T00:00:00+00:00")
    due = due_fires("0 * * * *", "UTC", wm, wm + 3_600_000, catchup=True, max_runs=0)
    assert due.fire_times == (wm + 3_600_000,)


# --- follow-ups of the three behaviour choices above --------------------------------------------


def test_a_schedule_counts_from_when_it_is_added_or_changed() -> None:
    """``watermark_on_register``: a new DAG, an added schedule, another cron or zone arm from
    now; an unchanged schedule (however written) or a removed one keep the progress."""
    hourly = {"id": "d", "schedule": "0 * * * *"}
    wm, now = 1_000, 9_000
    assert cron.watermark_on_register(None, 0, hourly, now) == now
    assert cron.watermark_on_register({"id": "d"}, wm, hourly, now) == now
    assert cron.watermark_on_register(hourly, wm, {**hourly, "schedule": "30 * * * *"}, now) == now
    assert cron.watermark_on_register(hourly, wm, {**hourly, "timezone": "Europe/Berlin"}, now) == now
    assert cron.watermark_on_register(hourly, wm, {**hourly, "schedule": " 0  * * * * "}, now) == wm
    assert cron.watermark_on_register(hourly, wm, {**hourly, "timezone": "UTC", "catchup": True}, now) == wm
    assert cron.watermark_on_register(hourly, wm, {"id": "d"}, now) == wm
    assert cron.watermark_on_register(hourly, now, {**hourly, "schedule": "30 * * * *"}, wm) == now


async def test_a_changed_cron_does_not_catch_up_before_the_change_an_unchanged_one_does(
    node: tuple[MasterNode, Clock],
) -> None:
    n, clock = node
    start = clock()
    for dag_id in ("changed", "kept"):
        await n.log.propose(c.RegisterDag(at_ms=clock(), spec=spec(dag_id, "0 * * * *", catchup=True)))
    clock.ms += 3 * 3_600_000  # the master was down for three hours
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=spec("changed", "30 * * * *", catchup=True)))
    kept = spec("kept", "0 * * * *", catchup=True)
    kept["dag"] = {**kept["dag"], "description": "reworded"}  # type: ignore[dict-item]
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=kept))
    await n.scheduler.tick()
    assert runs_of(n, "changed") == []
    assert [r["scheduledMs"] for r in runs_of(n, "kept")] == [start + h * 3_600_000 for h in (1, 2, 3)]
    clock.ms += 3_600_000
    await n.scheduler.tick()
    assert [r["scheduledMs"] for r in runs_of(n, "changed")] == [start + 3 * 3_600_000 + 1_800_000]


def test_fit_to_room_keeps_the_intervals_that_do_not_fit_for_later() -> None:
    fires_ = (60_000, 120_000, 180_000)
    assert cron.fit_to_room(fires_, 200_000, 5) == (fires_, 200_000)
    assert cron.fit_to_room(fires_, 200_000, 2) == ((60_000, 120_000), 179_999)
    assert cron.fit_to_room(fires_, 200_000, 0) == ((), 59_999)
    assert cron.fit_to_room((), 200_000, 0) == ((), 200_000)


@contextlib.asynccontextmanager
async def limited_node(tmp_path: Path, pending: int) -> AsyncIterator[tuple[MasterNode, Clock]]:
    """A scheduler node whose DAGs may have ``pending`` runs waiting to start."""
    clock = Clock(ms("2026-03-28T12:00:00+00:00"))
    settings = Settings.load(
        overrides={"kiok.base.data.dir": str(tmp_path), "kiok.scheduler.max.pending.runs.per.dag": pending}
    )
    n = MasterNode(settings, clock)
    await n.open_stores()
    try:
        await n.auth.bootstrap("admin", "Some-Password-1")
        yield n, clock
    finally:
        n.kv.close()
        n.joblog.close()


async def cancel_pending(n: MasterNode, dag_id: str) -> None:
    for r in runs_of(n, dag_id):
        if r["state"] == "PENDING":
            await n.log.propose(c.CancelRun(at_ms=0, run_id=r["runId"]))


async def test_a_dag_at_the_pending_limit_says_so_once_and_catches_up_as_its_catchup_says(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Held intervals are not lost: once runs leave PENDING, catchup off runs the newest one
    (the others logged as missed), catchup on runs them oldest first as room allows."""
    async with limited_node(tmp_path, 2) as (n, clock):
        t0 = clock()
        await n.log.propose(c.RegisterDag(at_ms=t0, spec=spec("off", "* * * * *")))
        await n.log.propose(c.RegisterDag(at_ms=t0, spec=spec("on", "* * * * *", catchup=True)))
        with caplog.at_level(logging.INFO, logger="kiok.master.scheduler"):
            for _ in range(5):
                clock.ms += 60_000
                await n.scheduler.tick()
                await n.scheduler.tick()  # nothing new due: no second log line either
        held = [r.getMessage() for r in caplog.records if "waiting to start" in r.getMessage()]
        assert len(held) == 2 and all("max.pending.runs.per.dag" in m for m in held)
        assert not [r for r in caplog.records if "missed interval" in r.getMessage()]
        minute = [t0 + i * 60_000 for i in range(6)]
        assert [r["scheduledMs"] for r in runs_of(n, "off")] == minute[1:3]
        assert [r["scheduledMs"] for r in runs_of(n, "on")] == minute[1:3]

        await cancel_pending(n, "off")
        await cancel_pending(n, "on")
        await n.scheduler.tick()
        assert [r["scheduledMs"] for r in runs_of(n, "off")] == [*minute[1:3], minute[5]]
        assert [r["scheduledMs"] for r in runs_of(n, "on")] == minute[1:5]
        await cancel_pending(n, "on")
        await n.scheduler.tick()
        assert [r["scheduledMs"] for r in runs_of(n, "on")] == minute[1:6]


def test_a_host_dependent_zone_is_refused_in_a_new_dag_but_a_stored_one_still_loads() -> None:
    for name in ("localtime", "posixrules", "posix/Europe/Berlin", "right/UTC", "/etc/localtime", "../x"):
        with pytest.raises(ValueError, match="time zone"):
            cron.parse_timezone(name)
    assert str(cron.parse_timezone("Etc/GMT+5")) == "Etc/GMT+5"
    doc = spec("old", "0 * * * *", tz="localtime")
    with pytest.raises(DagValidationError, match="time zone") as e:
        spec_from_json(json.dumps(doc))
    assert e.value.field == "dag.timezone"
    assert compiled_spec(doc).timezone == "localtime"  # as every master re-reads stored specs


@pytest.mark.parametrize("name", ["A/" * 300 + "B", "A/B/C/D/E", "Europe/" + "x" * 80])
def test_a_zone_name_no_iana_zone_can_have_is_refused_naming_the_field(name: str) -> None:
    """'A/A/.../B' made ZoneInfo import tzdata.zoneinfo.A.A... until RecursionError (a 500)."""
    doc = spec("deep", "0 * * * *", tz=name)
    with pytest.raises(DagValidationError, match="time zone") as e:
        spec_from_json(json.dumps(doc))
    assert e.value.field == "dag.timezone"
    assert len(str(e.value)) < 300
    assert str(cron.parse_timezone("America/Argentina/ComodRivadavia")) == "America/Argentina/ComodRivadavia"


def test_a_stored_zone_the_lookup_cannot_walk_is_an_unknown_zone_not_a_crash() -> None:
    for name in ("A/" * 300 + "B", "x" * 5000):
        with pytest.raises(ValueError, match="unknown time zone"):
            cron.load_zone(name)


async def test_a_dag_stored_with_localtime_keeps_firing(node: tuple[MasterNode, Clock]) -> None:
    """Registered before the zone was refused: the scheduler and run creation still take it."""
    n, clock = node
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=spec("old", "0 * * * *", tz="localtime")))
    clock.ms += 3_600_000
    await n.scheduler.tick()
    assert len(runs_of(n, "old")) == 1


async def test_a_dag_at_the_pending_limit_costs_no_walk_over_its_missed_fires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held for months, a '* * * * *' DAG would have 100,000 fire times walked every tick."""
    async with limited_node(tmp_path, 1) as (n, clock):
        await n.log.propose(c.RegisterDag(at_ms=clock(), spec=spec("busy", "* * * * *")))
        clock.ms += 60_000
        await n.scheduler.tick()
        walks: list[int] = []

        def counted(*args: Any, **kwargs: Any) -> cron.DueFires:
            walks.append(1)
            return due_fires(*args, **kwargs)

        monkeypatch.setattr("kiok.master.scheduler.due_fires", counted)
        for _ in range(3):
            clock.ms += 30 * DAY
            assert await n.scheduler.tick() == clock() + 60_000  # no busy loop either
        assert walks == [] and len(runs_of(n, "busy")) == 1
