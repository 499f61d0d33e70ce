"""A DAG document is held to its limits while it is parsed, not after: the value count stops
the parse at the first value over it, the line of a refused field comes from the nodes the
parse kept (no second parse), and an error message stays short however large the problem."""

from __future__ import annotations

import pytest
import yaml

from kiok.dag import locate, yaml_doc
from kiok.dag.load import MAX_MESSAGE_CHARS, MAX_SOURCE_BYTES, spec_from_body, spec_from_yaml
from kiok.errors import DagValidationError, PayloadTooLarge


def test_the_value_limit_stops_the_parse_at_the_first_value_over_it() -> None:
    """Past the limit the rest of the document is never read: a syntax error at its end is
    not reached (it was, when the limit was checked on the parsed document)."""
    text = "x: [" + ",".join(["1"] * 250_000) + "]\n]]] not: [yaml"
    with pytest.raises(DagValidationError, match="document too large: over 200000 values"):
        spec_from_yaml(text)


def test_nesting_is_limited_while_parsing() -> None:
    text = "x: " + "[" * 70 + "]" * 70 + "\n]]] not: [yaml"
    with pytest.raises(DagValidationError, match="nested too deeply"):
        spec_from_yaml(text)


def test_limits_count_values_not_keys_and_aliases_once() -> None:
    assert yaml_doc.load("{a: 1, b: 2}", max_values=3) == {"a": 1, "b": 2}
    with pytest.raises(yaml_doc.LimitExceeded):
        yaml_doc.load("{a: 1, b: 2, c: 3}", max_values=3)
    assert yaml_doc.load("a: &a [1, 2]\nb: *a", max_values=5) == {"a": [1, 2], "b": [1, 2]}


def test_a_refused_field_gets_its_line_without_parsing_again(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_second_parse(*_: object, **__: object) -> None:
        raise AssertionError("the document was parsed again to find a line")

    monkeypatch.setattr(yaml, "compose", no_second_parse)
    monkeypatch.setattr(yaml_doc, "compose", no_second_parse)
    text = "dag: {id: d}\ntasks:\n  - {id: a, script: x}\n  - id: b\n    script: x\n    timeout: forever\n"
    with pytest.raises(DagValidationError) as caught:
        spec_from_body(text.encode(), "application/yaml")
    assert caught.value.field == "tasks[1].timeout" and caught.value.line == 6


def test_line_of_a_json_document_is_located_within_the_limits() -> None:
    text = '{"dag": {"id": "d"},\n "tasks": [\n  {"id": "a", "timeout": "x"}]}'
    assert locate.line_of(text, "tasks[0].timeout") == 3
    assert locate.line_of("[" + ",".join(["1"] * 250_001) + "]", "[3]") is None


def test_a_long_cycle_is_named_by_its_first_tasks_and_a_count() -> None:
    n = 3_000
    tasks = "\n".join(f"  - {{id: t{i}, requires: [t{(i - 1) % n}], script: x}}" for i in range(n))
    with pytest.raises(DagValidationError) as caught:
        spec_from_yaml(f"dag: {{id: cyc}}\ntasks:\n{tasks}\n")
    message = str(caught.value)
    assert len(message) < 500, len(message)
    assert message.startswith("tasks: cycle: t0 -> t1 -> t2") and "(2980 more tasks) -> t0" in message


def test_an_error_message_is_cut_to_a_readable_size() -> None:
    huge_key = "k" * 60_000
    text = f'{{"dag": {{"id": "d", "{huge_key}": 1}}, "tasks": []}}'
    with pytest.raises(DagValidationError) as caught:
        spec_from_body(text.encode(), "application/json")
    err = caught.value
    assert len(err.detail) <= MAX_MESSAGE_CHARS and "more characters)" in err.detail
    assert err.field is not None and len(err.field) <= MAX_MESSAGE_CHARS
    assert err.detail.startswith("unknown key 'kkk")


def test_a_source_over_the_dag_size_limit_is_refused_before_parsing() -> None:
    body = b"x: [" + b"1," * (MAX_SOURCE_BYTES // 2) + b"1]"
    with pytest.raises(PayloadTooLarge, match=r"DAG document too large: \d+ bytes, at most 4194304"):
        spec_from_body(body, "application/yaml")


def test_merge_keys_copying_too_many_keys_are_refused() -> None:
    """Each ``<<`` copies the keys it merges: 20,000 merges of one 20,000-key mapping (half a
    MiB) would copy 4 x 10^8. Tasks merging shared defaults stay well within the limit."""
    from kiok.dag.load import spec_from_yaml

    n = 20_000
    bomb = ["defaults: &a {" + ", ".join(f"k{i}: 1" for i in range(n)) + "}", "copies:"]
    bomb += ["  - {<<: *a}"] * n
    with pytest.raises(DagValidationError, match=r"merge keys \(<<\) copy over"):
        spec_from_yaml("\n".join(bomb) + "\ndag: {id: d}\ntasks: []\n")
    first = "  - &d {id: t0, script: 'true', retries: 2, timeout: 5m, trigger_rule: all_done}\n"
    tasks = "\n".join(f"  - {{<<: *d, id: t{i}}}" for i in range(1, 10_000))
    spec = spec_from_yaml(f"dag: {{id: many}}\ntasks:\n{first}{tasks}\n")
    assert len(spec.tasks) == 10_000
