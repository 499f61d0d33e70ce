"""IAM policy evaluation, AWS-style and pure.

A policy document is ``{"Statement": [{"Effect": "Allow"|"Deny", "Action": …, "Resource": …}]}``
where Action and Resource are a string or a list of strings with ``*`` and ``?`` wildcards.
A principal may do an action on a resource only if some statement of its policies (its own
and its groups') allows it and none denies it: default deny, and an explicit Deny wins.
``*`` matches any characters, ``/`` included: ``dag/hello*`` covers ``dag/hello-payroll``
and every run of both; ``dag/hello/*`` covers the runs of ``hello`` only.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kiok.errors import InvalidInput
from kiok.security import actions
from kiok.security.resources import pattern_problem

#: Every action a route checks (``kiok.security.actions``): a policy's Action pattern must
#: match one of them.
CATALOGUE = tuple(
    sorted(v for n, v in vars(actions).items() if n.isupper() and isinstance(v, str) and ":" in v)
)

_EFFECTS = ("Allow", "Deny")
#: Where a pattern's fixed part ends (as ``kiok.security.resources`` splits it).
_WILDCARD = re.compile(r"[*?\[]")


def _patterns(value: Any, field: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(x, str) and x for x in items):
        raise InvalidInput(f"{field}: a non-empty string or list of strings")
    return list(items)


def _resources(value: Any, field: str) -> list[str]:
    patterns = _patterns(value, field)
    for pattern in patterns:
        problem = _matches_nothing(pattern) or pattern_problem(pattern)
        if problem:
            raise InvalidInput(f"{field}: {problem}")
    return patterns


def _matches_nothing(pattern: str) -> str | None:
    """Why a Resource pattern that leads into a kind of resource still matches none, or
    None: a control or other unprintable character, a space or a non-ASCII character (no
    name holds one; what is not a resource's shape is ``pattern_problem``'s)."""
    if not pattern.isprintable():
        return f"{pattern!r} holds an unprintable character, which no kiok resource name has"
    if not pattern.isascii() or any(ch.isspace() for ch in pattern):
        # A Unicode hyphen or look-alike letter pasted from a document, a trailing space:
        # every name kiok takes in is ASCII without spaces, so the pattern would match none.
        return (
            f"{pattern!r} holds a space or a non-ASCII character, which no kiok resource name "
            "has (names are ASCII letters, digits, '_', '.', '@' and '-')"
        )
    return None


def _actions(value: Any, field: str) -> list[str]:
    """Action patterns, each matching some catalogued action: a misspelt one (``runs:Trigger``,
    ``dags:delete``) would match nothing, and in a Deny deny nothing, without a word."""
    patterns = _patterns(value, field)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(action, pattern) for action in CATALOGUE):
            close = difflib.get_close_matches(pattern, CATALOGUE, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InvalidInput(
                f"{field}: {pattern!r} names no kiok action (action names are case-sensitive, "
                f"e.g. 'dags:Trigger', 'runs:*'; see the action catalogue in docs/api.md){hint}"
            )
    return patterns


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
                "Action": _actions(st.get("Action"), f"{where}.Action"),
                "Resource": _resources(st.get("Resource", "*"), f"{where}.Resource"),
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


def resource_check(documents: Iterable[Mapping[str, Any]], action: str) -> Callable[[str], bool]:
    """``is_allowed(documents, action, resource)`` as a function of the resource, for a list
    that checks one action on many resources: the statements about other actions are set
    aside once, and when none denies it and one allows it on every resource (``*``), the
    answer is yes without matching anything."""
    relevant = [
        (st["Effect"], st["Resource"])
        for doc in documents
        for st in doc["Statement"]
        if _matches(st["Action"], action)
    ]
    if all(effect == "Allow" for effect, _ in relevant) and any(
        any(set(p) == {"*"} for p in patterns) for _, patterns in relevant
    ):
        return lambda resource: True

    def check(resource: str) -> bool:
        allowed = False
        for effect, patterns in relevant:
            if _matches(patterns, resource):
                if effect == "Deny":
                    return False
                allowed = True
        return allowed

    return check


def allowed_anywhere(documents: Iterable[Mapping[str, Any]], action: str) -> bool:
    """Whether ``action`` could be allowed on some resource: some statement allows it and no
    statement denies it on every resource (``*``). The gate in front of a list that is then
    filtered item by item with ``is_allowed``, so that a principal who may list nothing is
    refused rather than shown an empty list."""
    allowed = False
    for doc in documents:
        for st in doc["Statement"]:
            if _matches(st["Action"], action):
                if st["Effect"] == "Deny" and any(set(p) == {"*"} for p in st["Resource"]):
                    return False
                allowed |= st["Effect"] == "Allow"
    return allowed


def allowed_under(documents: Iterable[Mapping[str, Any]], action: str, prefix: str) -> bool:
    """Whether some statement allows ``action`` on some resource that starts with ``prefix``
    (``dag/etl/run/``: some run of ``etl``). Denies are not weighed: a yes means "look item by
    item", a no that nothing under ``prefix`` can be allowed, so a filtered list there is
    empty whatever it holds, without reading it (and without taking longer when it holds
    more: that would tell what a caller may not see)."""
    return any(
        st["Effect"] == "Allow"
        and _matches(st["Action"], action)
        and any(_may_match_after(pattern, prefix) for pattern in st["Resource"])
        for doc in documents
        for st in doc["Statement"]
    )


def _may_match_after(pattern: str, prefix: str) -> bool:
    """Whether glob ``pattern`` (``fnmatch``: ``*``, ``?``, ``[...]``) matches some string
    that starts with ``prefix``: the pattern's positions ``prefix`` can lead to, as a
    nondeterministic automaton; any left means the rest can still be matched."""
    tokens = _glob_tokens(pattern)

    def closure(states: set[int]) -> set[int]:
        todo, out = list(states), set(states)
        while todo:
            i = todo.pop()
            if i < len(tokens) and tokens[i] == "*" and i + 1 not in out:
                out.add(i + 1)
                todo.append(i + 1)
        return out

    states = closure({0})
    for ch in prefix:
        step: set[int] = set()
        for i in states:
            if i == len(tokens):
                continue
            token = tokens[i]
            if token == "*":
                step.add(i)
            elif token == "?" or token == ch or (len(token) > 1 and fnmatch.fnmatchcase(ch, token)):
                step.add(i + 1)
        if not step:
            return False
        states = closure(step)
    return True


def _glob_tokens(pattern: str) -> list[str]:
    """``pattern`` cut as ``fnmatch`` reads it: ``*``, ``?``, a ``[...]`` class (kept whole,
    matched with ``fnmatch`` itself), or one literal character (an unclosed ``[`` too)."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "[":
            j = i + 1
            if j < len(pattern) and pattern[j] == "!":
                j += 1
            if j < len(pattern) and pattern[j] == "]":
                j += 1
            end = pattern.find("]", j)
            if end >= 0:
                tokens.append(pattern[i : end + 1])
                i = end + 1
                continue
        if ch == "*" and tokens and tokens[-1] == "*":
            i += 1
            continue
        tokens.append(ch)
        i += 1
    return tokens


FULL_ACCESS = {"Statement": [{"Effect": "Allow", "Action": ["*"], "Resource": ["*"]}]}
#: The group bootstrap puts the first user in, and the policy it holds (``FULL_ACCESS``).
ADMINS_GROUP = "admins"
ADMINS_POLICY = "full-access"


# --- who a policy write reaches ----------------------------------------------------------------


def is_attached(policy: str, holders: Iterable[Mapping[str, Any]]) -> bool:
    """Whether ``policy`` is attached to one of ``holders`` (user and group records)."""
    return any(policy in (record.get("policies") or ()) for record in holders)


def write_reaches_holders(
    old_document: Mapping[str, Any] | None, new_document: Mapping[str, Any] | None, attached: bool
) -> bool:
    """Whether writing ``new_document`` (None: deleting the policy) over ``old_document`` (None:
    no such policy) changes what some user may do: the policy is attached and its document
    changes or goes. Such a write is attaching and detaching, and needs ``iam:AttachPolicy`` /
    ``iam:DetachPolicy``. The API decides its check with this, and applying a command whose
    caller was not checked decides with it again (a concurrent attach), so both agree."""
    if not attached or old_document is None:
        return False
    return new_document is None or dict(old_document) != dict(new_document)
