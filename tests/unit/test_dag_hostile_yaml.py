"""Hostile YAML that used to escape the typed errors: a value its explicit tag cannot build
(a 500 instead of ``invalid_dag``), and an alias bomb that is not a mapping, whose error
message walked every item its aliases stand for (a few hundred bytes, minutes of CPU)."""

from __future__ import annotations

import time

import pytest

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
