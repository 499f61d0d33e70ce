"""``${run.interval.start}``/``${run.interval.end}``: the interval a run stands for, its
placeholders (refused at registration when unknown) and ``KIOK_INTERVAL_*``; and the
relative/absolute time bounds of ``kiok runs list --since/--until``."""

from __future__ import annotations

import pytest

from kiok.core.instants import parse_time_bound
from kiok.core.placeholders import Context, resolve, run_value_names
from kiok.core.run_interval import interval_env, interval_values, run_interval
from kiok.dag.load import spec_from_yaml
from kiok.errors import DagValidationError, InvalidInput, TaskError

DAY = 86_400_000
MAY_1 = 1_714_521_600_000  # 2024-05-01T00:00:00Z


def test_a_scheduled_run_stands_for_its_fire_time_to_the_next() -> None:
    start, end = run_interval("0 2 * * *", "UTC", MAY_1 + 2 * 3_600_000, MAY_1)
    assert interval_values((start, end)) == {
        "interval.start": "2024-05-01T02:00:00Z",
        "interval.end": "2024-05-02T02:00:00Z",
    }
    # In the DAG's zone: Berlin's 02:00 is 00:00Z in summer.
    berlin = run_interval("0 2 * * *", "Europe/Berlin", MAY_1, MAY_1)
    assert berlin == (MAY_1, MAY_1 + DAY)


def test_a_manual_run_stands_for_its_trigger_time() -> None:
    assert run_interval("0 2 * * *", "UTC", None, MAY_1 + 5) == (MAY_1 + 5, MAY_1 + 5)
    assert run_interval(None, "UTC", None, MAY_1) == (MAY_1, MAY_1)
    assert interval_env((MAY_1, MAY_1 + DAY)) == {
        "KIOK_INTERVAL_START": "2024-05-01T00:00:00Z",
        "KIOK_INTERVAL_END": "2024-05-02T00:00:00Z",
    }


def _resolve(text: str, context: Context = Context.TEXT) -> str:
    run = interval_values((MAY_1, MAY_1 + DAY))
    return resolve(text, params={"x": "a b"}, lookup_conn=None, now_ms=0, context=context, run=run)


def test_run_placeholders_resolve_as_they_are_in_every_context() -> None:
    text = 'echo ${run.interval.start} "${run.interval.end}" ${params.x}'
    assert (
        _resolve(text, Context.SHELL) == 'echo 2024-05-01T00:00:00Z "2024-05-02T00:00:00Z" "${KIOK_PARAM_X}"'
    )
    assert _resolve("print('${run.interval.end}')", Context.PYTHON) == "print('2024-05-02T00:00:00Z')"
    assert _resolve("/load?from=${run.interval.start}", Context.URL) == "/load?from=2024-05-01T00:00:00Z"
    with pytest.raises(TaskError, match=r"unknown placeholder \$\{run.id\}"):
        _resolve("${run.id}")
    with pytest.raises(TaskError, match="has no value here"):
        resolve("${run.interval.start}", params={}, lookup_conn=None, now_ms=0)
    assert run_value_names("${run.interval.start} ${run.x} ${HOME}") == {"interval.start", "x"}


def test_registration_accepts_the_run_placeholders_and_refuses_unknown_ones() -> None:
    spec = spec_from_yaml(
        "dag: {id: iv}\ntasks: [{id: a, script: 'echo ${run.interval.start} ${run.interval.end}'}]\n"
    )
    assert spec.task("a").script == "echo ${run.interval.start} ${run.interval.end}"
    with pytest.raises(DagValidationError, match=r"unknown placeholder \$\{run.interval.begin\}") as e:
        spec_from_yaml("dag: {id: iv}\ntasks: [{id: a, script: 'echo ${run.interval.begin}'}]\n")
    assert e.value.field == "tasks[0].script"
    with pytest.raises(DagValidationError, match="not \\$\\{run") as e:
        spec_from_yaml(
            "dag: {id: iv, notify: {on_failure: [{webhook: {url: 'https://x.invalid/${run.interval.start}'}}]}}\n"
            "tasks: [{id: a, script: 'true'}]\n"
        )
    assert e.value.field == "dag.notify.on_failure[0].webhook.url"


NOW = MAY_1 + 12 * 3_600_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h", NOW - 3_600_000),
        ("2d", NOW - 2 * DAY),
        ("30m", NOW - 1_800_000),
        ("1.5h", NOW - 5_400_000),
        ("2024-05-01", MAY_1),
        ("2024-05-01T06:00:00Z", MAY_1 + 6 * 3_600_000),
        ("2024-05-01T08:00:00+02:00", MAY_1 + 6 * 3_600_000),
        (str(MAY_1), MAY_1),
    ],
)
def test_time_bounds_relative_or_absolute(text: str, expected: int) -> None:
    assert parse_time_bound(text, "--since", NOW) == expected


@pytest.mark.parametrize("bad", ["yesterday", "1 hour", "-1h", "2024-13-01", ""])
def test_a_bad_time_bound_names_the_option_and_the_forms(bad: str) -> None:
    with pytest.raises(InvalidInput) as e:
        parse_time_bound(bad, "--since", NOW)
    assert e.value.message.startswith(f"--since: {bad!r} is not a time: use a relative time (30m, 1h, 2d)")
