"""Duplicate keys and merge order do not depend on what else a document holds: a tagged
value (``!!omap``, ``!!set``, ``!!binary``, ``!!timestamp``) once handed the whole document to
PyYAML's constructor, which keeps the last of two keys and lets a later merged mapping win.
Keys equal once resolved (``1``/``1``, ``true``/``yes``) are duplicates too, and a mapping that
merges itself is refused instead of silently merging nothing."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import yaml

from kiok.dag import yaml_doc
from kiok.dag.load import spec_from_yaml
from kiok.errors import DagValidationError

#: tagged values that used to switch the whole document to PyYAML's constructor
TAGGED = [
    "!!omap [{a: 1}]",
    "!!set {a, b}",
    "!!pairs [{a: 1}, {a: 2}]",
    "!!binary aGVsbG8=",
    "!!timestamp 2024-01-02",
    "!!str 12",
]


def _dag(head: str, tagged: str) -> str:
    """The tagged value comes first: the document used to be built in order until it met one."""
    return f"tasks:\n  - id: t\n    script: x\n    config: {{k: {tagged}}}\ndag: {head}\n"


@pytest.mark.parametrize("tagged", TAGGED)
def test_a_duplicate_dag_id_is_refused_whatever_the_document_holds(tagged: str) -> None:
    with pytest.raises(DagValidationError, match=r"line 5.*found duplicate key 'id'"):
        spec_from_yaml(_dag("{id: d1, id: d2}", tagged))


@pytest.mark.parametrize("tagged", TAGGED)
def test_a_second_merge_key_is_refused_whatever_the_document_holds(tagged: str) -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="found duplicate key '<<'"):
        yaml_doc.load(f"x: {tagged}\nt: {{<<: {{a: 1}}, <<: {{b: 2}}}}\n")


@pytest.mark.parametrize("tagged", TAGGED)
def test_the_earlier_merged_mapping_wins_whatever_the_document_holds(tagged: str) -> None:
    doc = yaml_doc.load(f"x: {tagged}\nt: {{<<: [{{r: 3}}, {{r: 2, s: 1}}]}}\n")
    assert doc["t"] == {"r": 3, "s": 1}


def test_a_task_gets_the_earlier_merged_value_in_a_document_with_an_omap() -> None:
    text = (
        "tasks:\n  - {id: u, script: x, config: {k: !!omap [{a: 1}]}}\n"
        "  - {id: t, script: x, <<: [{retries: 3}, {retries: 2}]}\ndag: {id: m}\n"
    )
    assert spec_from_yaml(text).tasks[1].retries == 3


def test_tagged_values_are_still_built_as_pyyaml_builds_them() -> None:
    doc = yaml_doc.load(
        "o: !!omap [{a: 1}, {b: [2]}]\np: !!pairs [{a: 1}, {a: 2}]\ns: !!set {a, b}\n"
        "b: !!binary aGVsbG8=\nd: !!timestamp 2024-01-02\n"
    )
    assert doc == {
        "o": [("a", 1), ("b", [2])],
        "p": [("a", 1), ("a", 2)],  # pairs may repeat a key: that is what they are for
        "s": {"a", "b"},
        "b": b"hello",
        "d": datetime.date(2024, 1, 2),
    }


@pytest.mark.parametrize(
    "text",
    [
        "o: !!omap [{a: {id: 1, id: 2}}]\n",  # inside a tagged collection
        "s: !!set {a, b, a}\n",
        "o: !!omap [{a: 1}, {a: 2}]\n",  # an ordered map's keys are unique (YAML 1.1 omap)
        "s: !!set {? a, <<: {b: 1}, <<: {c: 1}}\n",
    ],
)
def test_duplicate_keys_inside_tagged_collections_are_refused(text: str) -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="found duplicate key"):
        yaml_doc.load(text)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("1: a\n1: b\n", "'1'"),
        ("1: a\n0x1: b\n", "'0x1'"),
        ("true: x\nyes: y\n", "'yes'"),
        ("t: {on: 1, True: 2}\n", "'True'"),
        ("~: a\nnull: b\n", "'null'"),
        ("2024-01-02: a\n2024-01-02: b\n", "'2024-01-02'"),
        ("1.0: a\n1: b\n", "'1'"),
    ],
)
def test_keys_equal_once_resolved_are_duplicates(text: str, key: str) -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match=f"found duplicate key {key}"):
        yaml_doc.load(text)


def test_a_duplicate_resolved_key_in_a_dag_names_its_line() -> None:
    text = "dag:\n  id: d\n  params:\n    true: x\n    yes: y\ntasks: []\n"
    with pytest.raises(DagValidationError, match=r"line 5.*found duplicate key 'yes'"):
        spec_from_yaml(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: &a {<<: *a}\n",
        "a: &a {x: 1, <<: *a}\n",
        "a: &a {x: 1, <<: [{y: 2}, *a]}\n",
        "a: &a {x: {<<: *a}}\n",  # merging a mapping it is inside of
        "a: &a [{<<: *a}]\n",
    ],
)
def test_a_mapping_that_merges_itself_is_refused(text: str) -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="merges a mapping it is part of"):
        yaml_doc.load(text)


def test_recursive_values_without_merging_still_build_cycles() -> None:
    doc: Any = yaml_doc.load("a: &a {x: 1, self: *a}\n")
    assert doc["a"]["self"] is doc["a"]


def test_a_merge_key_shared_by_aliases_is_merged_once_per_mapping() -> None:
    doc = yaml_doc.load("b: &b {k: 1}\nm: &m {<<: [*b, *b]}\nn: {<<: [*m, *m, *b]}\n")
    assert doc["m"] == {"k": 1} and doc["n"] == {"k": 1}
