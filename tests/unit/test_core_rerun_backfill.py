"""Pure decisions behind re-run, backfill, the run timeout and the run's clock (``kiok.core.rerun``,
``kiok.core.backfill``, ``kiok.core.run_timeout``, ``kiok.core.run_clock``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kiok.core.backfill import backfill_intervals, parse_bound
from kiok.core.rerun import RerunRequest, rerun_selection, reset_records
from kiok.core.run_clock import requested_ms, started_ms
from kiok.core.run_timeout import overdue_runs, short_duration
from kiok.core.states import TaskRecord, TaskState
from kiok.dag.load import spec_from_yaml
from kiok.errors import Conflict, IllegalTransition, InvalidInput
from kiok.ids import TaskId

S = TaskState
SPEC = spec_from_yaml(
    """
dag: {id: d}
tasks:
  - {id: a, script: x}
  - {id: b, script: x, requires: [a]}
  - {id: c, script: x, requires: [b]}
  - {id: side, script: x, requires: [a]}
  - {id: cleanup, script: x, requires: [b], trigger_rule: all_failed}
"""
)


def _tasks(**states: TaskState) -> dict[TaskId, TaskRecord]:
    return {TaskId(t): TaskRecord(state=s, attempt=1 if s is not S.SKIPPED else 0) for t, s in states.items()}


FAILED_RUN = _tasks(a=S.SUCCESS, b=S.FAILED, c=S.SKIPPED, side=S.SUCCESS, cleanup=S.SUCCESS)


def test_only_failed_takes_what_did_not_succeed_and_its_downstream() -> None:
    assert rerun_selection(SPEC, FAILED_RUN, RerunRequest()) == ("b", "c", "cleanup")


def test_from_a_task_takes_it_and_everything_downstream_whatever_their_state() -> None:
    assert rerun_selection(SPEC, FAILED_RUN, RerunRequest(from_task="a")) == (
        "a",
        "b",
        "side",
        "c",
        "cleanup",
    )
    assert rerun_selection(SPEC, FAILED_RUN, RerunRequest(from_task="side")) == ("side",)


def test_all_tasks_and_the_refusals() -> None:
    done = _tasks(a=S.SUCCESS, b=S.SUCCESS, c=S.SUCCESS, side=S.SUCCESS, cleanup=S.SKIPPED)
    assert rerun_selection(SPEC, done, RerunRequest(only_failed=False)) == ("a", "b", "side", "c", "cleanup")
    assert rerun_selection(SPEC, done, RerunRequest()) == ("cleanup",)  # skipped counts as not succeeded
    all_ok = _tasks(a=S.SUCCESS, b=S.SUCCESS, c=S.SUCCESS, side=S.SUCCESS, cleanup=S.SUCCESS)
    with pytest.raises(Conflict, match="nothing to re-run"):
        rerun_selection(SPEC, all_ok, RerunRequest())
    with pytest.raises(InvalidInput, match="'nope'"):
        rerun_selection(SPEC, all_ok, RerunRequest(from_task="nope"))


def test_reset_records_keep_attempts_and_refuse_unfinished_tasks() -> None:
    reset = reset_records(FAILED_RUN, ("b", "c"), 5)  # type: ignore[arg-type]
    # Attempt numbers go on; those run so far are the base the re-run's retries count from.
    assert reset == {"b": TaskRecord(S.PENDING, 1, attempt_base=1), "c": TaskRecord(S.PENDING, 0)}
    with pytest.raises(IllegalTransition):
        reset_records({TaskId("a"): TaskRecord(S.RUNNING, 1)}, (TaskId("a"),), 5)


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_backfill_intervals_cover_the_range_inclusively_and_stop_at_now() -> None:
    frm = parse_bound("2026-01-01", "UTC", "from", end=False)
    to = parse_bound("2026-01-31", "UTC", "to", end=True)
    plan = backfill_intervals("0 2 * * *", "UTC", frm, to, _ms("2026-01-10T12:00:00"), max_runs=1000)
    assert len(plan.intervals) == 10 and plan.future == 21
    assert plan.intervals[0] == (_ms("2026-01-01T02:00:00"), _ms("2026-01-02T02:00:00"))
    assert plan.intervals[-1] == (_ms("2026-01-10T02:00:00"), _ms("2026-01-11T02:00:00"))


def test_backfill_bounds_are_in_the_dags_time_zone_and_checked() -> None:
    assert parse_bound("2026-01-01", "Europe/Berlin", "from", end=False) == _ms("2025-12-31T23:00:00")
    assert parse_bound("2026-01-01T05:00:00Z", "Europe/Berlin", "from", end=False) == _ms(
        "2026-01-01T05:00:00"
    )
    with pytest.raises(InvalidInput, match="from: 'soon'"):
        parse_bound("soon", "UTC", "from", end=False)
    with pytest.raises(InvalidInput, match="more than 10 intervals"):
        backfill_intervals(
            "0 * * * *", "UTC", _ms("2026-01-01T00:00:00"), _ms("2026-01-02T00:00:00"), 2**42, max_runs=10
        )
    with pytest.raises(InvalidInput, match="to: "):
        backfill_intervals("0 * * * *", "UTC", 10, 5, 2**42, max_runs=10)


def test_overdue_runs_count_from_the_start_or_the_last_rerun() -> None:
    runs: list[dict[str, Any]] = [
        {"runId": "late", "startedMs": 0, "runTimeoutMs": 1800_000},
        {"runId": "fresh", "startedMs": 1000_000, "runTimeoutMs": 1800_000},
        {"runId": "rerun", "startedMs": 0, "runTimeoutMs": 1800_000, "lastRerun": {"atMs": 1500_000}},
        {"runId": "pending", "startedMs": None, "runTimeoutMs": 1},
        {"runId": "nolimit", "startedMs": 0},
        {"runId": "already", "startedMs": 0, "runTimeoutMs": 1, "failReason": "x"},
        # A re-run waits its turn (queued, PENDING): its clock starts when it gets a driver.
        {"runId": "queued", "state": "PENDING", "startedMs": 0, "runTimeoutMs": 1, "lastRerun": {"atMs": 1}},
        {
            "runId": "restarted",
            "state": "RUNNING",
            "startedMs": 0,
            "runTimeoutMs": 1800_000,
            "lastRerun": {"atMs": 1, "startedMs": 1200_000},
        },
    ]
    overdue, nxt = overdue_runs(runs, 2000_000)
    assert [(o.run_id, o.reason) for o in overdue] == [("late", "run timed out after 30m")]
    assert nxt == 2800_000
    overdue, nxt = overdue_runs(runs, 3000_100)
    assert [o.run_id for o in overdue] == ["late", "fresh", "restarted"] and nxt == 3300_000
    assert [short_duration(ms) for ms in (1500, 2000, 90_000, 7200_000, 86_400_000)] == [
        "1500ms",
        "2s",
        "90s",
        "2h",
        "1d",
    ]


@pytest.mark.parametrize(
    ("run", "started", "requested"),
    [
        ({"state": "PENDING", "createdMs": 5, "startedMs": None}, None, 5),
        ({"state": "RUNNING", "createdMs": 5, "startedMs": 7}, 7, 5),
        # Re-run and queued: waits since the request, until it gets its own driver.
        ({"state": "PENDING", "createdMs": 5, "startedMs": 7, "lastRerun": {"atMs": 90}}, None, 90),
        (
            {"state": "RUNNING", "createdMs": 5, "startedMs": 7, "lastRerun": {"atMs": 90, "startedMs": 95}},
            95,
            90,
        ),
        # Cancelled before it ever started, then re-run.
        ({"state": "PENDING", "createdMs": 5, "startedMs": None, "lastRerun": {"atMs": 90}}, None, 90),
        # Re-run by an earlier version: RUNNING at once, no start of its own.
        ({"state": "RUNNING", "createdMs": 5, "startedMs": 7, "lastRerun": {"atMs": 90}}, 90, 90),
        ({"state": "RUNNING", "createdMs": 5, "startedMs": 99, "lastRerun": {"atMs": 90}}, 99, 90),
    ],
)
def test_the_run_clock_starts_with_the_run_or_its_last_rerun(
    run: dict[str, Any], started: int | None, requested: int
) -> None:
    assert (started_ms(run), requested_ms(run)) == (started, requested)
