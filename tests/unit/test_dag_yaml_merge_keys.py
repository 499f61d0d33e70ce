"""Merge keys in DAG documents: ``<<`` given twice in one mapping is a duplicate key, like any
other, and in ``<<: [*a, *b]`` the earlier mapping wins a key they share (YAML 1.1)."""

from __future__ import annotations

import pytest
import yaml

from kiok.dag import yaml_doc
from kiok.dag.load import spec_from_yaml
from kiok.errors import DagValidationError

ANCHORS = "x-a: &a {retries: 3, timeout: 1s}\nx-b: &b {retries: 2, script: 'echo b'}\n"


def test_the_earlier_mapping_in_a_merge_list_wins() -> None:
    doc = yaml_doc.load(ANCHORS + "t: {<<: [*a, *b]}\n")
    assert doc["t"] == {"retries": 3, "timeout": "1s", "script": "echo b"}


def test_the_mappings_own_keys_win_over_merged_ones() -> None:
    doc = yaml_doc.load(ANCHORS + "t: {retries: 7, <<: [*a, *b]}\nu: {<<: *b, script: own}\n")
    assert doc["t"]["retries"] == 7 and doc["u"] == {"retries": 2, "script": "own"}


def test_two_merge_keys_in_one_mapping_are_a_duplicate_key() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="found duplicate key '<<'"):
        yaml_doc.load(ANCHORS + "t: {<<: *a, <<: *b}\n")
    text = "dag: {id: m}\ntasks:\n  - id: t\n    script: x\n    <<: {retries: 3}\n    <<: {retries: 2}\n"
    with pytest.raises(DagValidationError, match=r"line 6.*found duplicate key '<<'"):
        spec_from_yaml(text)


def test_a_task_gets_the_earlier_merged_value() -> None:
    text = "dag: {id: m}\ntasks:\n  - {id: t, script: x, <<: [{retries: 3}, {retries: 2}]}\n"
    assert spec_from_yaml(text).tasks[0].retries == 3


def test_duplicate_keys_are_still_refused_in_a_document_with_merge_keys() -> None:
    """A merge key used to hand the whole document to PyYAML, which keeps the last of two keys."""
    text = "dag: {id: m}\ntasks:\n  - {id: t, script: x, <<: {retries: 3}, timeout: 1s, timeout: 2s}\n"
    with pytest.raises(DagValidationError, match="found duplicate key 'timeout'"):
        spec_from_yaml(text)


def test_merging_something_else_than_a_mapping_is_refused() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="expected a mapping or list of mappings"):
        yaml_doc.load("t: {<<: [1, 2]}\n")
