"""What ``JsonLimits`` refuses before any endpoint sees a JSON body, and how cheaply: a body of
millions of tiny values (no login needed), a repeated key, bytes that are not UTF-8; and the
policy Resource patterns that can match nothing."""

from __future__ import annotations

import json
import time

import pytest

from kiok.errors import InvalidInput
from kiok.master.api.json_limits import MAX_VALUES, json_body_problem, value_bound
from kiok.security.policy import validate_document

BOMB = b'{"user":"x","password":"y","z":[' + b",".join([b"[]"] * 3_000_000) + b"]}"


def test_a_body_of_millions_of_values_is_refused_without_being_parsed() -> None:
    began = time.process_time()
    problem = json_body_problem(BOMB)
    took = time.process_time() - began
    assert problem == f"JSON body too large: over {MAX_VALUES} values"
    # Parsed and walked, it took about 4 s; counted, a few ms (generous for a busy machine).
    assert took < 0.5, took


def test_a_body_at_the_value_limit_passes_and_one_past_it_is_refused() -> None:
    at = json.dumps(list(range(MAX_VALUES - 1))).encode()  # the list itself is a value too
    assert json_body_problem(at) is None
    past = json.dumps(list(range(MAX_VALUES))).encode()
    assert "over 200000 values" in (json_body_problem(past) or "")


def test_commas_inside_strings_do_not_refuse_a_body_near_the_limit() -> None:
    """Strings full of structural bytes over-count only until they are blanked out."""
    doc = {"tasks": [{"id": f"t{i}", "script": "echo a,b:c[d]," * 20} for i in range(20_000)]}
    body = json.dumps(doc).encode()
    assert value_bound(body) <= 2 * MAX_VALUES
    assert json_body_problem(body) is None


def test_escaped_quotes_and_backslashes_in_strings_are_blanked_in_linear_time() -> None:
    """An unterminated string of ``\\",`` made the string-blanking regex restart at every
    escaped quote (460 KB: 8.8 s); escapes of both kinds inside strings still do not count."""
    bomb = b"[" + b"," * 400_001 + b'"' + b'\\",' * 450_000
    began = time.process_time()
    assert "over 200000 values" in (json_body_problem(bomb) or "")
    assert time.process_time() - began < 0.5
    doc = {"k": ['a,b:c[\\"\\\\,,,' for _ in range(150_000)]}
    body = json.dumps(doc).encode()
    assert value_bound(body) < 2 * MAX_VALUES and json_body_problem(body) is None


def test_a_body_that_is_no_json_object_or_array_is_left_to_the_endpoint() -> None:
    """A YAML DAG sent without a content type: its flow lists' commas are not JSON values."""
    yaml_dag = b"dag: {id: d}\ntasks: [" + b"{id: t, script: 'true'}," * 120_000 + b"]\n"
    assert value_bound(yaml_dag) > 2 * MAX_VALUES
    assert json_body_problem(yaml_dag) is None


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"policy": "dup", "policy": "full-access", "document": {}}', "policy"),
        (b'{"document": {"Statement": [{"Effect": "Deny", "Action": "*", "Effect": "Allow"}]}}', "Effect"),
    ],
)
def test_a_repeated_key_at_any_depth_is_refused_naming_it(body: bytes, key: str) -> None:
    assert (
        json_body_problem(body) == f"JSON body: duplicate key {key!r} in an object (each key may appear once)"
    )


@pytest.mark.parametrize("body", [b"\xff", b'{"user": "\xff"}'])
def test_a_body_that_is_not_utf8_is_refused_saying_so(body: bytes) -> None:
    problem = json_body_problem(body) or ""
    assert problem.startswith("body is not UTF-8 text (invalid start byte at offset"), problem


@pytest.mark.parametrize("resource", ["cluster/*", "cluster?", "cluster/x", "dag/x\u0000", "dag/\n*"])
def test_a_resource_pattern_that_can_match_nothing_is_refused(resource: str) -> None:
    doc = {"Statement": [{"Effect": "Allow", "Action": "dags:List", "Resource": resource}]}
    with pytest.raises(InvalidInput, match="Resource"):
        validate_document(doc)


@pytest.mark.parametrize("resource", ["cluster", "cluster*", "c*", "*", "dag/x", "iam/user/*"])
def test_resource_patterns_that_can_match_are_kept(resource: str) -> None:
    doc = {"Statement": [{"Effect": "Allow", "Action": "dags:List", "Resource": resource}]}
    assert validate_document(doc)["Statement"][0]["Resource"] == [resource]


def test_a_byte_order_mark_or_another_encoding_does_not_skip_the_count() -> None:
    """A UTF-8 byte order mark hid the ``[`` the count starts from; in UTF-16 the byte
    patterns of escapes never match. JSON is UTF-8 (RFC 8259): other encodings are refused,
    a UTF-8 mark is skipped."""
    values = b"[" + b"[]," * 1_500_000 + b"[]]"
    began = time.process_time()
    assert "over 200000 values" in (json_body_problem(b"\xef\xbb\xbf" + values) or "")
    assert time.process_time() - began < 0.5
    text = '["a\\"b",' + "[]," * 1_000_000 + '"c\\"d"]'
    for encoding in ("utf-16", "utf-16-le", "utf-32"):
        assert "not UTF-8 text" in (json_body_problem(text.encode(encoding)) or ""), encoding
    assert json_body_problem(b'\xef\xbb\xbf{"ok": 1}') is None


def test_a_body_of_many_strings_is_counted_not_refused_for_its_quotes() -> None:
    """70,001 values whose strings hold quotes and commas: over 800,000 quote characters."""
    body = json.dumps(['",' * 10] * 70_000).encode()
    assert body.count(b'"') > 800_000
    assert json_body_problem(body) is None
