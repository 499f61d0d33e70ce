from __future__ import annotations

import fnmatch
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiok.errors import InvalidInput
from kiok.security import resources
from kiok.security.policy import (
    FULL_ACCESS,
    _glob_tokens,
    _may_match_after,
    allowed_anywhere,
    allowed_under,
    is_allowed,
    validate_document,
)

READ_DAGS = validate_document(
    {"Statement": [{"Effect": "Allow", "Action": ["dags:List", "dags:Read"], "Resource": "dag/*"}]}
)
DENY_SECRET = validate_document(
    {"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "dag/secret-*"}]}
)


def test_default_deny_allow_and_explicit_deny_wins() -> None:
    assert not is_allowed([], "dags:Read", "dag/a")
    assert is_allowed([READ_DAGS], "dags:Read", "dag/a")
    assert not is_allowed([READ_DAGS], "dags:Delete", "dag/a")
    assert not is_allowed([READ_DAGS], "dags:Read", "run/a/1")
    assert is_allowed([FULL_ACCESS], "anything:At", "all")
    assert not is_allowed([FULL_ACCESS, DENY_SECRET], "dags:Read", "dag/secret-x")
    assert is_allowed([FULL_ACCESS, DENY_SECRET], "dags:Read", "dag/public")


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({}, "Statement"),
        ({"Statement": [{"Effect": "Maybe", "Action": "*"}]}, "Effect"),
        ({"Statement": [{"Effect": "Allow"}]}, "Action"),
        ({"Statement": [{"Effect": "Allow", "Action": "*", "Resouce": "*"}]}, "Resouce"),
    ],
)
def test_bad_documents_name_the_field(doc: object, field: str) -> None:
    with pytest.raises(InvalidInput, match=field):
        validate_document(doc)


def test_a_policy_on_a_dags_runs_does_not_reach_a_dag_whose_id_extends_it() -> None:
    hello_runs = validate_document(
        {"Statement": [{"Effect": "Allow", "Action": "runs:Read", "Resource": "dag/hello/*"}]}
    )
    assert is_allowed([hello_runs], "runs:Read", resources.run("hello", "hello-1-1"))
    assert not is_allowed([hello_runs], "runs:Read", resources.run("hello-payroll", "hello-payroll-1-2"))
    assert not is_allowed([hello_runs], "runs:Read", resources.dag("hello"))  # the DAG is not its runs
    # '*' crosses '/': a prefix pattern covers every DAG whose id starts so, and their runs.
    prefix = validate_document(
        {"Statement": [{"Effect": "Allow", "Action": "runs:Read", "Resource": "dag/hello*"}]}
    )
    assert is_allowed([prefix], "runs:Read", resources.run("hello-payroll", "hello-payroll-1-2"))


def test_iam_resources_name_one_record() -> None:
    bob = validate_document(
        {"Statement": [{"Effect": "Allow", "Action": "iam:*", "Resource": "iam/user/bob"}]}
    )
    assert is_allowed([bob], "iam:SetPassword", resources.user("bob"))
    assert not is_allowed([bob], "iam:SetPassword", resources.user("bobby"))
    assert not is_allowed([bob], "iam:AddUserToGroup", resources.group("admins"))
    assert not is_allowed([bob], "iam:AttachPolicy", resources.policy("full-access"))


def test_a_literal_pattern_matches_its_resource_alone() -> None:
    odd = resources.user("a*[b]?")
    doc = {"Statement": [{"Effect": "Allow", "Action": ["x:Y"], "Resource": [resources.literal(odd)]}]}
    assert is_allowed([doc], "x:Y", odd)
    assert not is_allowed([doc], "x:Y", resources.user("abc"))
    assert not is_allowed([doc], "x:Y", resources.user("a*[b]?x"))


@pytest.mark.parametrize(
    ("run_id", "dag_id"),
    [("hello-1714530600001-42", "hello"), ("hello-payroll-1714530600001-7", "hello-payroll"), ("x", "x")],
)
def test_the_dag_of_a_run_id(run_id: str, dag_id: str) -> None:
    assert resources.dag_of_run_id(run_id) == dag_id


def test_allowed_anywhere_gates_filtered_lists() -> None:
    assert not allowed_anywhere([], "runs:List")
    one_dag = validate_document(
        {"Statement": [{"Effect": "Allow", "Action": "runs:List", "Resource": "dag/hello/*"}]}
    )
    assert allowed_anywhere([one_dag], "runs:List")
    assert not allowed_anywhere([one_dag], "runs:Read")
    assert allowed_anywhere([one_dag, DENY_SECRET], "runs:List")  # a Deny on some resources
    deny_all = validate_document({"Statement": [{"Effect": "Deny", "Action": "runs:*", "Resource": "*"}]})
    assert not allowed_anywhere([one_dag, deny_all], "runs:List")


@pytest.mark.parametrize(
    "resource",
    [
        *("*", "d*", "dag/x", "dag/x/run/*", "iam/*", "iam/user/bob", "connection/c", "cluster", "?ag/x"),
        *("dag/a.b_c-d/run/a.b_c-d-1700000000000-3", "dag/a/r*", "iam/user/bob@example.com", "c*"),
        *("iam/policy/full-access", "dag/*/run/*", "connection/*", "dag/[ab]*"),
    ],
)
def test_resource_patterns_that_can_match_are_accepted(resource: str) -> None:
    validate_document({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": resource}]})


@pytest.mark.parametrize(
    ("resource", "hint"),
    [
        ("run/hello-*", "dag/<dagId>/run/<runId>"),
        ("iam/access-key/AK1", "iam/user/<name>"),
        ("dags/x", "names no kiok resource"),
        # Without wildcards, a pattern must be a resource: each of these was stored, and in a
        # Deny denied nothing.
        ("dag/", "dag/<dagId>"),
        ("dag/a/run/", "dag/<dagId>/run/<runId>"),
        ("connection/", "connection/<id>"),
        ("connection/a.b", "connection/<id>"),
        ("iam/user/", "iam/user/<name>"),
        ("iam/user/a/b", "iam/user/<name>"),
        ("iam/group/x/run/y", "iam/group/<name>"),
        # Before its first wildcard, a pattern must be the start of a resource.
        ("iam/user/a/b*", "iam/user/<name>"),
        ("dag//run/*", "dag/<dagId>/run/<runId>"),
        ("dag/a/runs/*", "dag/<dagId>/run/<runId>"),
    ],
)
def test_resource_patterns_that_match_nothing_are_refused_with_the_forms(resource: str, hint: str) -> None:
    with pytest.raises(InvalidInput, match=r"Statement\[0\]\.Resource") as refused:
        validate_document({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": resource}]})
    assert resource in refused.value.message and hint in refused.value.message


def test_allowed_under_says_whether_anything_under_a_prefix_can_be_allowed() -> None:
    etl_runs = validate_document(
        {"Statement": [{"Effect": "Allow", "Action": "runs:Read", "Resource": "dag/etl/run/*"}]}
    )
    assert allowed_under([etl_runs], "runs:Read", "dag/etl/run/")
    assert not allowed_under([etl_runs], "runs:Read", "dag/secret/run/")  # nothing to scan for
    assert not allowed_under([etl_runs], "runs:Read", "dag/etl-secret/run/")
    assert not allowed_under([etl_runs], "runs:List", "dag/etl/run/")
    patterns = ["dag/e?l*", "dag/[s]ecret/run/a*"]
    some = validate_document({"Statement": [{"Effect": "Allow", "Action": "runs:*", "Resource": patterns}]})
    assert allowed_under([some], "runs:Read", "dag/etl-2/run/")
    assert allowed_under([some], "runs:Read", "dag/secret/run/")  # some runs of it: look
    assert not allowed_under([some], "runs:Read", "dag/other/run/")
    assert allowed_under([FULL_ACCESS], "runs:Read", "dag/anything/run/")
    assert not allowed_under([], "runs:Read", "dag/etl/run/")


#: Every character the patterns below name, and one they do not.
_ALPHABET = "ab/[]*?c"


@settings(max_examples=300, deadline=None)
@given(
    pattern=st.lists(st.sampled_from(["a", "b", "/", "*", "?", "[a]", "[!a]", "[", "]", "[]a]"]), max_size=4),
    prefix=st.text(alphabet=_ALPHABET, max_size=5),
)
def test_may_match_after_agrees_with_fnmatch(pattern: list[str], prefix: str) -> None:
    """Against brute force: some string that starts with ``prefix`` and is at most as much
    longer as the pattern has tokens (enough: each needs one character at most)."""
    glob = "".join(pattern)
    brute = any(
        fnmatch.fnmatchcase(prefix + "".join(rest), glob)
        for n in range(len(_glob_tokens(glob)) + 1)
        for rest in itertools.product(_ALPHABET, repeat=n)
    )
    assert _may_match_after(glob, prefix) == brute, (glob, prefix)
