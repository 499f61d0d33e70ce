"""Limits every parsed document (a JSON body, a YAML or JSON DAG) meets before kiok walks,
stores or ships it: nesting depth, number of values, integers that fit 64 bits, finite
floats, strings (and keys) that are Unicode text. Past these a document could exhaust the
stack, the CPU, or the msgpack encoder that every stored value goes through (a lone UTF-16
surrogate, ``"\\ud800"`` in JSON, has no UTF-8 form); refused up front, with the place of the
problem named."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MAX_DEPTH = 64
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
INT_PROBLEM = "integer out of range (a 64-bit signed integer: at most 19 digits)"
TEXT_PROBLEM = "not valid Unicode text (a lone UTF-16 surrogate such as \\ud800)"

#: (value, depth, parent entry, key or index in the parent): a path is rebuilt only for a problem.
_Entry = tuple[object, int, "_Entry | None", object]
_SCALARS = (str, bool, type(None))


def parse_json_int(digits: str) -> int:
    """``json.loads(..., parse_int=parse_json_int)``: an integer past 64 bits, however many
    digits it has, becomes one just out of range, so ``document_problem`` can say where it is
    (Python would refuse thousands of digits inside the parser, with no place named)."""
    return int(digits) if len(digits) <= 20 else INT_MAX + 1


class DuplicateKey(ValueError):
    """A JSON object gives ``key`` twice (``unique_object``)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``'s ``object_pairs_hook`` refusing a key given twice (``DuplicateKey``):
    parsers keep one of them, and which one differs (``{"Effect": "Deny", "Effect": "Allow"}``
    must not become Allow), as YAML documents refuse them (``kiok.dag.yaml_doc``)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return obj


def document_problem(doc: object, *, max_depth: int = MAX_DEPTH, max_values: int | None = None) -> str | None:
    """Why ``doc`` (made of dicts, lists, tuples and scalars) is refused, or None. The message
    starts with the path of the offending value (``tasks[0].timeout``)."""
    found = located_problem(doc, max_depth=max_depth, max_values=max_values)
    if found is None:
        return None
    path, problem = found
    return f"{path or 'the document'}: {problem}" if path is not None else problem


def located_problem(
    doc: object, *, max_depth: int = MAX_DEPTH, max_values: int | None = None
) -> tuple[str | None, str] | None:
    """``(path, problem)`` of the first value of ``doc``, in document order, that is refused
    (``path`` "" for the document itself, None for its size as a whole), or None. Iterative,
    so a document nested past the interpreter's recursion limit is answered, not crashed on.
    """
    budget = max_values
    stack: list[_Entry] = [(doc, 0, None, None)]
    while stack:
        entry = stack.pop()
        node, depth = entry[0], entry[1]
        if budget is not None:
            budget -= 1
            if budget < 0:
                return (
                    None,
                    f"document too large: over {max_values} values (a shared value counts once per use)",
                )
        if depth > max_depth:
            return _where(entry), f"nested too deeply (at most {max_depth} levels)"
        kind = type(node)
        if isinstance(node, str):
            if not _is_text(node):
                return _where(entry), TEXT_PROBLEM
            continue
        if kind in _SCALARS:
            continue
        if kind is dict or isinstance(node, Mapping):
            items: Mapping[object, object] = node  # type: ignore[assignment]
            for k in items:
                if isinstance(k, str) and not _is_text(k):
                    return _where(entry), f"a key is {TEXT_PROBLEM}"
            # Pushed last first, so that they are looked at in document order.
            stack.extend(reversed([(v, depth + 1, entry, k) for k, v in items.items()]))
        elif kind is list or isinstance(node, list | tuple):
            values: Sequence[object] = node  # type: ignore[assignment]
            stack.extend(reversed([(v, depth + 1, entry, i) for i, v in enumerate(values)]))
        elif isinstance(node, int) and not isinstance(node, bool):
            if not INT_MIN <= node <= INT_MAX:
                return _where(entry), INT_PROBLEM
        elif isinstance(node, float) and not math.isfinite(node):
            return _where(entry), "NaN and infinity are not valid values"
    return None


def _is_text(value: str) -> bool:
    """Whether ``value`` has a UTF-8 form (no lone surrogate)."""
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _where(entry: _Entry) -> str:
    steps: list[str] = []
    at: _Entry | None = entry
    while at is not None and at[2] is not None:
        parent = at[2][0]
        steps.append(f".{at[3]}" if isinstance(parent, Mapping) else f"[{at[3]}]")
        at = at[2]
    path = "".join(reversed(steps)).removeprefix(".")
    if len(path) > 80:
        path = path[:60] + "..." + path[-16:]
    return path
