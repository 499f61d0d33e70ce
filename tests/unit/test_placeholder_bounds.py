"""Trigger args placed into a task's text have a bound, whatever the DAG repeats.

Attack: a user who may trigger a DAG (not change it) passes a 64 KiB arg to a DAG whose http
task puts ``${params.x}`` in its URL a thousand times. Each reference was placed in full:
the worker built a 192 MB URL and spent 4 s of CPU percent-encoding it, per task and per
trigger (on the master's event loop too, in a standalone). Now the values placed in one text
come to at most ``MAX_PLACED_BYTES`` (before encoding) and the task fails naming why.
"""

from __future__ import annotations

import pytest

from kiok.core.placeholders import MAX_PLACED_BYTES, Context, resolve
from kiok.errors import TaskError

BIG = "é" * 32_000  # 64,000 bytes: the largest a single arg may be


@pytest.mark.parametrize("context", [Context.URL, Context.FORM, Context.JSON, Context.TEXT, Context.PYTHON])
def test_a_value_repeated_past_the_bound_fails_the_task_naming_why(context: Context) -> None:
    text = "x = '" + "${params.x}" * 1000 + "'" if context is Context.PYTHON else "${params.x}" * 1000
    with pytest.raises(TaskError, match=r"params placed in this text.*more than"):
        resolve(text, params={"x": BIG}, lookup_conn=None, now_ms=0, context=context)


def test_values_within_the_bound_are_placed() -> None:
    times = MAX_PLACED_BYTES // len(BIG.encode())
    out = resolve("${params.x}" * times, params={"x": BIG}, lookup_conn=None, now_ms=0)
    assert out == BIG * times


def test_shell_scripts_place_a_reference_whatever_the_value_size() -> None:
    out = resolve(
        'echo "${params.x}"\n' * 1000, params={"x": BIG}, lookup_conn=None, now_ms=0, context=Context.SHELL
    )
    assert len(out) < 50_000
