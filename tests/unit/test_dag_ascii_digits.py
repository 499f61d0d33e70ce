"""Numbers in DAG fields and trigger args are ASCII digits: ``\\d`` and ``int()`` also take
Arabic-Indic and other Unicode digits, so ``'١٢s'`` was read as twelve seconds."""

from __future__ import annotations

import pytest

from kiok.dag.durations import parse_duration_ms
from kiok.dag.load import spec_from_yaml
from kiok.dag.params import check_args
from kiok.errors import DagValidationError, InvalidInput


@pytest.mark.parametrize("value", ["١٢s", "12s\u3000", "١٢", "１２ms", "1.٥h", "\u0661ms"])
def test_durations_with_non_ascii_digits_are_refused(value: str) -> None:
    with pytest.raises(DagValidationError, match=r"tasks\[0\]\.timeout: invalid duration"):
        parse_duration_ms(value, "tasks[0].timeout")


def test_a_task_timeout_with_arabic_indic_digits_is_refused() -> None:
    with pytest.raises(DagValidationError, match=r"tasks\[0\]\.timeout: invalid duration"):
        spec_from_yaml("dag: {id: d}\ntasks: [{id: a, script: x, timeout: '١٢s'}]\n")
    assert (
        spec_from_yaml("dag: {id: d}\ntasks: [{id: a, script: x, timeout: '12s'}]\n").tasks[0].timeout_ms
        == 12_000
    )


@pytest.mark.parametrize(("kind", "value"), [("integer", "١٢"), ("number", "١٢.٥"), ("number", "１２")])
def test_numeric_args_with_non_ascii_digits_are_refused(kind: str, value: str) -> None:
    spec = spec_from_yaml(
        f"dag: {{id: d, params: {{n: {{type: {kind}, default: 1}}}}}}\ntasks: [{{id: a, script: x}}]\n"
    )
    with pytest.raises(InvalidInput, match=f"args.n: expected an? {kind}"):
        check_args(spec.params, spec.param_rules, False, {"n": value})
    assert check_args(spec.params, spec.param_rules, False, {"n": "12"}) == {"n": 12}
