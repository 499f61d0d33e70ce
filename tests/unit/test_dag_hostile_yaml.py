"""Hostile YAML that used to escape the typed errors: a value its explicit tag cannot build
(a 500 instead of ``invalid_dag``), and an alias bomb that is not a mapping, whose error
message walked every item its aliases stand for (a few hundred bytes, minutes of CPU)."""

from __future__ import annotations

import time

import pytest

from kiok.dag import yaml_doc
from kiok.dag.load import spec_from_yaml
from kiok.errors import DagValidationError

TAGGED = ['!!int ""', '!!float "-"', "!!bool foo", "!!timestamp foo", '!!binary "%%%"', "!!omap [1]"]


@pytest.mark.parametrize("value", TAGGED)
@pytest.mark.parametrize("where", ["value", "key"])
def test_a_value_its_tag_cannot_build_is_an_invalid_dag(value: str, where: str) -> None:
    doc = (
        f"dag: {{id: d, description: {value}}}\ntasks: []\n"
        if where == "value"
        else f"dag: {{id: d}}\n? {value}\n: 1\ntasks: []\n"
    )
    with pytest.raises(DagValidationError, match=r"invalid YAML|unknown key|expected|must be"):
        spec_from_yaml(doc)


def test_an_alias_bomb_that_is_no_mapping_is_refused_at_once() -> None:
    """Eight levels of ten aliases each: 10^8 items in ~400 bytes."""
    lines = ["- &l0 [a,a,a,a,a,a,a,a,a,a]"]
    lines += [f"- &l{i} [" + ",".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 8)]
    began = time.process_time()
    with pytest.raises(DagValidationError, match="a DAG document is a mapping") as refused:
        spec_from_yaml("\n".join(lines) + "\n")
    assert time.process_time() - began < 1.0
    assert len(str(refused.value)) < 300


def test_a_chain_of_merged_sets_costs_its_length_not_two_to_its_length() -> None:
    """Each ``!!set`` merged twice by the next level: it was rebuilt every time (2^n), and
    empty sets copied no key the merge budget counted."""
    lines = ["dag: {id: d}", "tasks: []", "x:", "  s0: &s0 !!set {}", "  t0: &t0 !!set {}"]
    for k in range(1, 40):
        lines.append(f"  s{k}: &s{k} !!set {{<<: [*s{k - 1}, *t{k - 1}]}}")
        lines.append(f"  t{k}: &t{k} !!set {{<<: [*s{k - 1}, *t{k - 1}]}}")
    began = time.process_time()
    with pytest.raises(DagValidationError, match="unknown key 'x'"):
        spec_from_yaml("\n".join(lines) + "\n")
    assert time.process_time() - began < 1.0


def test_a_long_base_60_number_is_refused_before_it_is_read() -> None:
    """PyYAML reads ``1:59:59...`` in time quadratic in its length (480 KB: 5.5 s)."""
    began = time.process_time()
    with pytest.raises(DagValidationError, match="base-60"):
        spec_from_yaml("dag: {id: d}\ntasks: [{id: t, script: x, retries: 1" + ":59" * 160_000 + "}]\n")
    assert time.process_time() - began < 1.0
    assert yaml_doc.load_with_root("x: 1:30\n", max_values=10, max_depth=10)[0] == {"x": 90}
