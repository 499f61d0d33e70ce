"""A DAG registered before param patterns were RE2 keeps working: its stored spec is compiled
again for every run (``compiled_spec``), and a pattern RE2 refuses (``\\Z``, ``\\u00e9``,
``(?x)``, a lookahead, ``a{1001}``) is matched with Python's ``re``, as when it was registered.
Only registration refuses such a pattern."""

from __future__ import annotations

from typing import Any

import pytest

from kiok.dag.load import compiled_spec, spec_from_document
from kiok.dag.params import check_args, parse_param
from kiok.errors import DagValidationError, InvalidInput
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.kv import MemoryKV

#: (Python-only pattern, a value it accepts, a value it refuses)
LEGACY = [
    (r"[a-z]+\Z", "abc", "abc1"),
    (r"caf\u00e9", "café", "cafe"),
    (r"(?x) a b  # spaced out", "ab", "a b"),
    (r"(?!admin)[a-z]+", "alice", "admin"),
    (r"(\w)\1", "aa", "ab"),
    (r"a{1001}", "a" * 1001, "a" * 1000),
]


def _doc(pattern: str, name: str = "d") -> dict[str, Any]:
    return {
        "dag": {"id": name, "params": {"s": {"type": "string", "pattern": pattern}}},
        "tasks": [{"id": "a", "script": "x"}],
    }


@pytest.mark.parametrize(("pattern", "good", "bad"), LEGACY)
def test_a_stored_spec_with_a_python_only_pattern_still_compiles_and_matches(
    pattern: str, good: str, bad: str
) -> None:
    spec = compiled_spec(_doc(pattern))
    rule = spec.param_rules["s"]
    assert rule.legacy_pattern and rule.pattern == pattern
    assert check_args(spec.params, spec.param_rules, False, {"s": good}) == {"s": good}
    with pytest.raises(InvalidInput, match=r"args\.s: .* does not match pattern"):
        check_args(spec.params, spec.param_rules, False, {"s": bad})
    assert spec_from_document(_doc(pattern)) == spec  # the default is the stored-spec behaviour


@pytest.mark.parametrize(("pattern", "good", "bad"), LEGACY)
def test_registration_refuses_a_pattern_re2_cannot_compile(pattern: str, good: str, bad: str) -> None:
    raw = {"type": "string", "pattern": pattern, "default": good}
    with pytest.raises(DagValidationError, match=r"dag\.params\.s\.pattern: invalid regular expression") as e:
        parse_param("s", raw, "dag.params.s", registering=True)
    assert "RE2 syntax" in str(e.value)
    assert parse_param("s", raw, "dag.params.s")[1] is not None  # a stored spec: accepted


@pytest.mark.timeout(10)
def test_registration_refuses_before_matching_the_default_with_python_re() -> None:
    """A backtracking pattern RE2 refuses must not be run over its default at registration."""
    raw = {"type": "string", "pattern": r"(a+)+\Z", "default": "a" * 60 + "!"}
    with pytest.raises(DagValidationError, match="invalid escape sequence"):
        parse_param("s", raw, "dag.params.s", registering=True)


def test_a_pattern_re2_compiles_is_matched_with_re2_in_a_stored_spec_too() -> None:
    spec = compiled_spec(_doc(r"\w+", "w"))
    assert not spec.param_rules["s"].legacy_pattern
    with pytest.raises(InvalidInput, match="does not match"):  # RE2's \w is ASCII-only
        check_args(spec.params, spec.param_rules, False, {"s": "é"})


def test_a_stored_pattern_neither_engine_compiles_is_still_refused() -> None:
    with pytest.raises(
        DagValidationError, match=r"dag\.params\.s\.pattern: invalid regular expression: missing \]"
    ):
        compiled_spec(_doc("[a", "broken"))


async def test_runs_of_a_dag_stored_with_a_legacy_pattern_can_be_created() -> None:
    log = LocalCommandLog(MemoryKV(keys.SPACES))
    await log.propose(c.RegisterDag(at_ms=1, spec=_doc(r"[a-z]+\Z", "old")))
    created = await log.propose(c.CreateRun(at_ms=2, dag_id="old", args={"s": "abc"}))
    assert created["runId"]
    with pytest.raises(InvalidInput, match="does not match pattern"):
        await log.propose(c.CreateRun(at_ms=3, dag_id="old", args={"s": "abc\n"}))
