"""Param patterns are RE2: matching is linear in the value whatever the pattern (no ReDoS from
a DAG author's regex), and what RE2 cannot do is refused at registration, naming the param."""

from __future__ import annotations

import pytest

from kiok.dag.load import spec_from_yaml
from kiok.dag.params import check_args
from kiok.errors import DagValidationError, InvalidInput


def _dag(pattern: str, default: str = "ab") -> str:
    param = f"{{type: string, pattern: '{pattern}', default: {default}}}"
    return f"dag: {{id: p, params: {{s: {param}}}}}\ntasks: [{{id: a, script: x}}]\n"


@pytest.mark.timeout(10)
def test_a_catastrophic_pattern_matches_in_linear_time() -> None:
    """With Python's backtracking ``re`` each extra 'a' doubled the time: 5 s at 27, years at 60."""
    spec = spec_from_yaml(_dag("(a+)+b"))
    for value in ("a" * 60, "a" * 60_000):
        with pytest.raises(InvalidInput, match=r"args\.s: .* does not match pattern"):
            check_args(spec.params, spec.param_rules, False, {"s": value})
    assert check_args(spec.params, spec.param_rules, False, {"s": "aaab"}) == {"s": "aaab"}


@pytest.mark.timeout(10)
def test_a_default_is_matched_in_linear_time_at_registration() -> None:
    with pytest.raises(DagValidationError, match=r"dag\.params\.s\.default: .* does not match"):
        spec_from_yaml(_dag("(a+)+b", "a" * 60))


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", r"invalid escape sequence: \\1"),
        ("(?=a)a", r"invalid perl operator: \(\?="),
        ("(?<!a)b", r"invalid perl operator: \(\?<!"),
        ("[a", "missing ]"),
    ],
)
def test_what_re2_cannot_compile_is_refused_naming_the_param(pattern: str, why: str) -> None:
    with pytest.raises(
        DagValidationError, match=f"dag.params.s.pattern: invalid regular expression: {why}"
    ) as e:
        spec_from_yaml(_dag(pattern))
    assert "RE2 syntax" in str(e.value) and "no backreferences" in str(e.value)


def test_patterns_match_the_whole_value() -> None:
    spec = spec_from_yaml(_dag("[a-z]+", "abc"))
    assert check_args(spec.params, spec.param_rules, False, {"s": "xyz"}) == {"s": "xyz"}
    with pytest.raises(InvalidInput, match="does not match"):
        check_args(spec.params, spec.param_rules, False, {"s": "xyz1"})
