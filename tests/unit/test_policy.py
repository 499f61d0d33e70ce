from __future__ import annotations

import pytest

from kiok.errors import InvalidInput
from kiok.security.policy import FULL_ACCESS, is_allowed, validate_document

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
