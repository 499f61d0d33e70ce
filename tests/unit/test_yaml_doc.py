"""The lean YAML constructor gives what PyYAML's safe loader gives, and registering a large
DAG does not run the cyclic garbage collector over and over."""

from __future__ import annotations

import gc
from typing import Any

import pytest
import yaml

from bench.history import big_dag_yaml
from kiok.dag import yaml_doc
from kiok.dag.load import spec_from_json, spec_from_yaml

SAME_AS_PYYAML = [
    "",
    "just a string",
    "dag: {id: d}\ntasks: [{id: a, script: 'true', retries: 3, timeout: 10s}]",
    "a: 1\nb: 1.5\nc: true\nd: ~\ne: null\nf: 0x1f\ng: 2024-01-02\nh: 2024-01-02T03:04:05Z\ni: .inf\nj: yes",
    "x: !!str 12\ny: !!int '7'\nz: !!float 1\nw: !!binary aGVsbG8=\n",
    "base: &b {a: 1, b: 2}\nmerged: {<<: *b, c: 3}\n",  # merge keys: PyYAML's constructor
    "s: !!set {a, b}\no: !!omap [{a: 1}, {b: 2}]\np: !!pairs [{a: 1}]\n",
    "1: one\n2.5: two\nfalse: three\n~: four\n2024-01-02: five\n",
    "l: &l [1, 2, [3, {k: v}]]\nm: *l\n",
    "? [a, b]\n: c\n",  # an unhashable key: PyYAML's error
    "a: !!map x\n",
    "a: !unknown x\n",
    "a: 2023-02-30\n",
]


def _std(text: str) -> tuple[str, Any]:
    try:
        return "ok", yaml.load(text, Loader=yaml_doc.SAFE_LOADER)
    except Exception as e:
        return type(e).__name__, str(e)


def _lean(text: str) -> tuple[str, Any]:
    try:
        return "ok", yaml_doc.load(text)
    except Exception as e:
        return type(e).__name__, str(e)


@pytest.mark.parametrize("text", SAME_AS_PYYAML)
def test_same_document_or_error_as_pyyaml(text: str) -> None:
    assert _lean(text) == _std(text)


def test_aliases_stay_shared_and_cost_their_nodes() -> None:
    # a billion laughs: 10**9 strings when expanded, a few dozen nodes as written
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]")
    doc = yaml_doc.load("\n".join(lines))
    assert doc["i"][0] is doc["h"] and doc["i"][9][9] is doc["g"]


def test_a_recursive_alias_builds_a_cycle_like_pyyaml() -> None:
    doc = yaml_doc.load("a: &a [1, *a]")
    assert doc["a"][1] is doc["a"]


def _collections_during(fn: Any) -> int:
    seen = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(count)
    try:
        fn()
    finally:
        gc.callbacks.remove(count)
    return len(seen)


def test_compiling_a_10000_task_dag_runs_no_garbage_collection() -> None:
    """Compiling allocates some 300,000 objects and frees none until it ends: with the
    collector on, it ran over 500 times (a third of the CPU time of a registration). At
    most one collection, as the collector comes back on at the end."""
    text = big_dag_yaml("big", 10_000)
    assert gc.isenabled()
    spec = None

    def compile_yaml() -> None:
        nonlocal spec
        spec = spec_from_yaml(text)

    assert _collections_during(compile_yaml) <= 1
    assert spec is not None and len(spec.tasks) == 10_000
    small = '{"dag": {"id": "d"}, "tasks": [{"id": "a", "script": "x"}]}'
    assert _collections_during(lambda: spec_from_json(small)) <= 1
    assert gc.isenabled()  # and on again afterwards, failing or not
    with pytest.raises(Exception, match="invalid YAML"):
        spec_from_yaml("dag: [")
    assert gc.isenabled()
