from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from kiok.core.timefmt import iso_millis, iso_utc

_MS = st.integers(min_value=-62_135_596_800_000, max_value=4_102_444_800_000)  # years 1 to 2100


def test_known_values() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00Z"
    assert iso_millis(0) == "1970-01-01T00:00:00.000Z"
    assert iso_millis(1_714_564_800_250) == "2024-05-01T12:00:00.250Z"
    assert iso_utc(1_714_564_800_999) == "2024-05-01T12:00:00Z"
    # Four-digit years however early (``kiok runs list --since 0001-01-01`` sends this).
    assert iso_millis(-62_135_596_800_000) == "0001-01-01T00:00:00.000Z"


@given(st.lists(_MS, min_size=1, max_size=20))
def test_matches_datetime_whatever_the_order(values: list[int]) -> None:
    # The remembered second must never leak into a different one.
    for ms in values:
        expected = (
            datetime.fromtimestamp(ms // 1000, tz=UTC).isoformat(timespec="seconds").removesuffix("+00:00")
        )
        assert iso_utc(ms) == expected + "Z"
        assert iso_millis(ms) == f"{expected}.{ms % 1000:03d}Z"
