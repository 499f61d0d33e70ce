"""IAM policy evaluation, AWS-style and pure.

A policy document is ``{"Statement": [{"Effect": "Allow"|"Deny", "Action": …, "Resource": …}]}``
where Action and Resource are a string or a list of strings with ``*`` and ``?`` wildcards.
A principal may do an action on a resource only if some statement of its policies (its own
and its groups') allows it and none denies it: default deny, and an explicit Deny wins.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

from kiok.errors import InvalidInput

_EFFECTS = ("Allow", "Deny")


def _patterns(value: Any, field: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(x, str) and x for x in items):
        raise InvalidInput(f"{field}: a non-empty string or list of strings")
    return list(items)


def validate_document(doc: Any) -> dict[str, Any]:
    """The document, normalised (Action/Resource as lists); InvalidInput naming the field."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("Statement"), list) or not doc["Statement"]:
        raise InvalidInput("document: needs a non-empty 'Statement' list")
    unknown = set(doc) - {"Version", "Statement"}
    if unknown:
        raise InvalidInput(f"document: unknown field(s) {sorted(unknown)}")
    statements = []
    for i, st in enumerate(doc["Statement"]):
        where = f"document.Statement[{i}]"
        if not isinstance(st, Mapping):
            raise InvalidInput(f"{where}: must be an object")
        if st.get("Effect") not in _EFFECTS:
            raise InvalidInput(f"{where}.Effect: 'Allow' or 'Deny'")
        extra = set(st) - {"Sid", "Effect", "Action", "Resource"}
        if extra:
            raise InvalidInput(f"{where}: unknown field(s) {sorted(extra)}")
        statements.append(
            {
                "Effect": st["Effect"],
                "Action": _patterns(st.get("Action"), f"{where}.Action"),
                "Resource": _patterns(st.get("Resource", "*"), f"{where}.Resource"),
            }
        )
    return {"Statement": statements}


def _matches(patterns: list[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def is_allowed(documents: Iterable[Mapping[str, Any]], action: str, resource: str) -> bool:
    allowed = False
    for doc in documents:
        for st in doc["Statement"]:
            if _matches(st["Action"], action) and _matches(st["Resource"], resource):
                if st["Effect"] == "Deny":
                    return False
                allowed = True
    return allowed


FULL_ACCESS = {"Statement": [{"Effect": "Allow", "Action": ["*"], "Resource": ["*"]}]}
