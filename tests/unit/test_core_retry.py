"""Retry delays, retry budget, the FAIL event's retry decision, and timeouts."""

from __future__ import annotations

from typing import Any

import pytest

from kiok.core.retry import fail_event, retries_left, retry_delay_ms, timeout_ms_for
from kiok.core.transitions import TaskEventKind
from kiok.dag.spec import TaskSpec
from kiok.ids import TaskId

HOUR = 3_600_000


def task(**kw: Any) -> TaskSpec:
    return TaskSpec(id=TaskId("t"), **kw)


@pytest.mark.parametrize(("attempt", "delay"), [(1, 1_000), (2, 2_000), (3, 4_000), (4, 8_000)])
def test_exponential_backoff_doubles(attempt: int, delay: int) -> None:
    assert retry_delay_ms(task(retry_delay_ms=1_000), attempt, HOUR) == delay


def test_constant_delay() -> None:
    t = task(retry_delay_ms=1_000, retry_exponential_backoff=False)
    assert [retry_delay_ms(t, a, HOUR) for a in (1, 2, 10)] == [1_000, 1_000, 1_000]


def test_task_cap_wins_over_cluster_cap() -> None:
    assert retry_delay_ms(task(retry_delay_ms=1_000), 10, cap_ms=HOUR) == 512_000
    assert retry_delay_ms(task(retry_delay_ms=1_000, max_retry_delay_ms=5_000), 10, cap_ms=HOUR) == 5_000
    assert retry_delay_ms(task(retry_delay_ms=1_000), 30, cap_ms=HOUR) == HOUR
    t = task(retry_delay_ms=2 * HOUR, retry_exponential_backoff=False)
    assert retry_delay_ms(t, 1, cap_ms=HOUR) == HOUR


@pytest.mark.parametrize("attempt", [63, 64, 1_000, 10**9])
def test_huge_attempts_stay_at_the_cap(attempt: int) -> None:
    assert retry_delay_ms(task(retry_delay_ms=1), attempt, cap_ms=HOUR) == HOUR


def test_zero_and_nonsense_inputs() -> None:
    assert retry_delay_ms(task(retry_delay_ms=0), 50, HOUR) == 0
    assert retry_delay_ms(task(retry_delay_ms=1_000), 0, HOUR) == 1_000


def test_retries_left_counts_attempts_from_one() -> None:
    assert [retries_left(task(retries=2), a) for a in (1, 2, 3, 4)] == [True, True, False, False]
    assert not retries_left(task(), 1)


def test_fail_event_carries_the_retry_decision() -> None:
    t = task(retries=1, retry_delay_ms=1_000)
    first = fail_event(t, 1, 50_000, cap_ms=HOUR, exit_code=2, error="boom")
    assert (first.kind, first.at_ms, first.retry_at_ms) == (TaskEventKind.FAIL, 50_000, 51_000)
    assert (first.exit_code, first.error) == (2, "boom")
    assert fail_event(t, 2, 60_000, cap_ms=HOUR).retry_at_ms is None


def test_timeout_precedence() -> None:
    assert timeout_ms_for(task(timeout_ms=5), 7, 9) == 5
    assert timeout_ms_for(task(), 7, 9) == 7
    assert timeout_ms_for(task(), None, 9) == 9
