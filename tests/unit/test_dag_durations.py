"""Duration grammar shared by every duration field of a DAG document."""

from __future__ import annotations

import pytest

from kiok.dag.durations import parse_duration_ms
from kiok.errors import DagValidationError


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("500ms", 500),
        ("10s", 10_000),
        ("30m", 1_800_000),
        ("1.5h", 5_400_000),
        ("2d", 172_800_000),
        (" 5 m ", 300_000),
        (0, 0),
        (1500, 1500),
        (2000.0, 2000),
    ],
)
def test_accepted_forms(value: object, ms: int) -> None:
    assert parse_duration_ms(value, "tasks[0].timeout") == ms


@pytest.mark.parametrize("value", ["10", "10x", "-5s", "1e3ms", "", "0.5ms", True, -1, 1.5, None, [1]])
def test_refusals_name_the_field_and_the_forms(value: object) -> None:
    with pytest.raises(DagValidationError) as e:
        parse_duration_ms(value, "tasks[0].timeout")
    assert e.value.field == "tasks[0].timeout"
    assert "tasks[0].timeout" in str(e.value)


def test_message_lists_accepted_forms() -> None:
    with pytest.raises(DagValidationError, match=r"ms, s, m, h or d"):
        parse_duration_ms("10 minutes", "dag.default_timeout")
