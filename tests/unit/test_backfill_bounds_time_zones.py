"""The documented backfill range, 1970-01-01 to 8999-12-31, is accepted in every time zone:
it is checked on the date as written; the instant is clamped to what kiok can hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiok.core.backfill import EARLIEST_MS, LATEST_MS, backfill_intervals, parse_bound
from kiok.errors import InvalidInput

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
]


@pytest.mark.parametrize("tz", ZONES)
def test_the_range_ends_are_accepted_in_every_zone(tz: str) -> None:
    first = parse_bound("1970-01-01", tz, "from", end=False)
    last = parse_bound("8999-12-31", tz, "to", end=True)
    assert EARLIEST_MS <= first < 2 * 86_400_000 and LATEST_MS - 2 * 86_400_000 < last < LATEST_MS
    assert parse_bound("1970-01-01T00:00:00", tz, "from", end=False) >= EARLIEST_MS
    assert parse_bound("8999-12-31T23:59:59", tz, "to", end=True) < LATEST_MS
    backfill_intervals(
        "0 0 * * *", tz, first, parse_bound("1970-01-03", tz, "to", end=True), 2**42, max_runs=10
    )
    plan = backfill_intervals(
        "0 0 * * *", tz, parse_bound("8999-12-29", tz, "from", end=False), last, 2**42, max_runs=10
    )
    assert plan.intervals == () and 1 <= plan.future <= 3


def test_berlin_starts_at_the_epoch_and_new_york_ends_before_the_limit() -> None:
    assert parse_bound("1970-01-01", "Europe/Berlin", "from", end=False) == EARLIEST_MS  # 1969-12-31T23:00Z
    assert parse_bound("8999-12-31", "America/New_York", "to", end=True) == LATEST_MS - 1
    assert parse_bound("1970-01-02", "Europe/Berlin", "from", end=False) == 23 * 3_600_000


@pytest.mark.parametrize(
    ("text", "field"),
    [("1969-12-31", "from"), ("9000-01-01", "to"), ("9999-12-31", "to"), ("1969-12-31T23:30:00Z", "from")],
)
@pytest.mark.parametrize("tz", ZONES)
def test_dates_really_outside_are_refused(text: str, field: str, tz: str) -> None:
    with pytest.raises(
        InvalidInput, match=f"{field}: '{text}' is out of range \\(1970-01-01 to 8999-12-31\\)"
    ):
        parse_bound(text, tz, field, end=field == "to")


def test_the_airflow_comparison_does_not_say_early_dates_cannot_be_backfilled() -> None:
    """docs/dags.md ("Coming from Airflow") listed "backfill of dates before a DAG was
    registered" as not in kiok, while a backfill takes any date from 1970-01-01 (above)."""
    text = (Path(__file__).parents[2] / "docs" / "dags.md").read_text(encoding="utf-8")
    (not_in_kiok,) = [p for p in text.split("\n\n") if p.startswith("Not in kiok:")]
    assert "backfill" not in not_in_kiok, not_in_kiok
