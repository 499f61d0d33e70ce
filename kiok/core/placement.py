"""Placing ``${params.x}`` into a task body as *data*, never as code (DESIGN.md §4).

A param value comes from whoever may trigger the DAG, who may not change what it runs. So
a value must never become text that the task's interpreter parses as code. Each place a
placeholder can stand gets its own rule, chosen by the text's language (``Context``) and,
within it, by where the placeholder sits:

- ``SHELL``: a reference to the ``KIOK_PARAM_<NAME>`` environment variable the task gets.
  The shell expands it, and an expansion is never parsed again as commands. Unquoted it
  becomes ``"${KIOK_PARAM_X}"`` (one word, no globbing). Inside double quotes, a heredoc or
  arithmetic ``$((...))`` it becomes ``${KIOK_PARAM_X}`` (declare a param used in arithmetic
  ``type: integer``: bash evaluates what an arithmetic expansion holds). Inside single
  quotes it becomes ``'"${KIOK_PARAM_X}"'``, which closes the quote, expands and reopens it.
- ``PYTHON``: inside a string literal, every character is written as an escape
  (``\\x41``), which cannot end the string. In code, a Python literal of the value. In a
  comment, the escaped text. A raw string, or a placeholder that is part of a name, is
  refused: neither can hold data safely.
- ``URL``: percent-encoded. ``FORM``: form-encoded.
- ``JSON``: inside a JSON string, JSON-escaped. Elsewhere, the value as a JSON literal.
- ``TEXT``: verbatim. Used only where no interpreter reads the text (an HTTP method).

Pure functions; ``kiok.core.placeholders.resolve`` calls ``place`` and keeps the results
opaque, so a value holding ``#{...}`` or ``${secret.x}`` is never expanded.
"""

from __future__ import annotations

import functools
import io
import json
import re
import tokenize
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any
from urllib.parse import quote, quote_plus

from kiok.errors import TaskError

__all__ = ["Context", "ParamRef", "place"]


class Context(StrEnum):
    SHELL = "shell"
    PYTHON = "python"
    URL = "url"
    FORM = "form"
    JSON = "json"
    TEXT = "text"


#: (start, end, name) of one ``${params.name}`` in the text.
ParamRef = tuple[int, int, str]

#: Every reference of ours; used to hide the others from Python's tokenizer.
_ANY_REF = re.compile(r"\$\{(params|conn|secret)\.[^}]*\}")


def place(text: str, refs: Sequence[ParamRef], context: Context, values: Mapping[str, Any]) -> list[str]:
    """The text to put in place of each of ``refs`` (in order); ``TaskError`` if one cannot
    be placed safely. Every ``refs`` name must be in ``values``."""
    if context is Context.SHELL:
        kinds = _shell_contexts(text, tuple(r[0] for r in refs), tuple(r[1] for r in refs))
        return [
            _SHELL_FORMS[kind].format(var=_env_name(name))
            for (_, _, name), kind in zip(refs, kinds, strict=True)
        ]
    if context is Context.PYTHON:
        return [
            _python_value(kind, values[name], name)
            for (_, _, name), kind in zip(refs, _python_contexts(text), strict=True)
        ]
    if context is Context.URL:
        return [quote(_text(values[name]), safe="") for _, _, name in refs]
    if context is Context.FORM:
        return [quote_plus(_text(values[name]), safe="") for _, _, name in refs]
    if context is Context.JSON:
        inside = _json_inside_string(text, tuple(r[0] for r in refs), tuple(r[1] for r in refs))
        return [
            json.dumps(_text(values[name]))[1:-1] if in_string else json.dumps(values[name])
            for (_, _, name), in_string in zip(refs, inside, strict=True)
        ]
    return [_text(values[name]) for _, _, name in refs]


def _env_name(name: str) -> str:
    return "KIOK_PARAM_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# --- shell -------------------------------------------------------------------------------------

_UNQUOTED, _SINGLE, _DOUBLE, _ANSI, _COMMENT, _HEREDOC, _HEREDOC_LITERAL, _ARITH = range(8)
_SHELL_FORMS = {
    _UNQUOTED: '"${{{var}}}"',
    _SINGLE: "'\"${{{var}}}\"'",
    _ANSI: "'\"${{{var}}}\"$'",
    _DOUBLE: "${{{var}}}",
    _COMMENT: "${{{var}}}",
    _HEREDOC: "${{{var}}}",
    _HEREDOC_LITERAL: "${{{var}}}",
    _ARITH: "${{{var}}}",
}
_WORD_END = frozenset(" \t\n;&|<>()")


@functools.lru_cache(maxsize=256)
def _shell_contexts(text: str, starts: tuple[int, ...], ends: tuple[int, ...]) -> list[int]:
    """The quoting state at each placeholder start. Not a full shell parser: it follows
    quotes, escapes, comments and heredocs, which decide how an expansion is written. A
    misjudged state can only give the wrong quoting, never code: every form is an expansion."""
    end_of = dict(zip(starts, ends, strict=True))
    found: dict[int, int] = {}
    pending: list[tuple[str, bool, bool]] = []  # heredocs opened on this line
    state, i, n = _UNQUOTED, 0, len(text)
    outer, depth = _UNQUOTED, 0  # where $(( ... )) was opened, and its open parentheses
    while i < n:
        if i in end_of:
            found[i] = state
            i = end_of[i]
            continue
        ch = text[i]
        if state in (_UNQUOTED, _DOUBLE) and text.startswith("$((", i):
            outer, state, depth, i = state, _ARITH, 2, i + 3
            continue
        if state == _ARITH:
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0:
                state = outer
            i += 1
            continue
        if state == _UNQUOTED:
            if ch == "\\":
                i += 2
                continue
            if ch == "'":
                state = _SINGLE
            elif ch == '"':
                state = _DOUBLE
            elif ch == "$" and text.startswith("'", i + 1):
                state, i = _ANSI, i + 2
                continue
            elif ch == "#" and (i == 0 or text[i - 1] in _WORD_END):
                state = _COMMENT
            elif text.startswith("<<", i) and not text.startswith("<<<", i):
                i = _heredoc_start(text, i + 2, pending)
                continue
            elif ch == "\n" and pending:
                i = _heredoc_bodies(text, i + 1, pending, end_of, found)
                pending.clear()
                continue
        elif state == _SINGLE:
            if ch == "'":
                state = _UNQUOTED
        elif state in (_DOUBLE, _ANSI):
            if ch == "\\":
                i += 2
                continue
            if ch == ('"' if state == _DOUBLE else "'"):
                state = _UNQUOTED
        elif state == _COMMENT and ch == "\n":
            state = _UNQUOTED
            continue  # the newline itself may start heredoc bodies
        i += 1
    return [found.get(s, _UNQUOTED) for s in starts]


def _heredoc_start(text: str, j: int, pending: list[tuple[str, bool, bool]]) -> int:
    strip = text.startswith("-", j)
    j += strip
    while j < len(text) and text[j] in " \t":
        j += 1
    k = j
    while k < len(text) and text[k] not in _WORD_END:
        k += 1
    word = text[j:k]
    literal = any(q in word for q in "'\"\\")
    delimiter = word.replace("'", "").replace('"', "").replace("\\", "")
    if delimiter:
        pending.append((delimiter, literal, strip))
    return k


def _heredoc_bodies(
    text: str, i: int, pending: list[tuple[str, bool, bool]], end_of: dict[int, int], found: dict[int, int]
) -> int:
    for delimiter, literal, strip in pending:
        while i < len(text):
            eol = text.find("\n", i)
            eol = len(text) if eol == -1 else eol
            line = text[i:eol]
            if (line.lstrip("\t") if strip else line) == delimiter:
                i = eol + 1
                break
            for start in end_of:
                if i <= start < eol:
                    found[start] = _HEREDOC_LITERAL if literal else _HEREDOC
            i = eol + 1
    return i


# --- python ------------------------------------------------------------------------------------

_CODE, _COMMENT_PY, _STR, _BYTES = "code", "comment", "str", "bytes"


@functools.lru_cache(maxsize=256)
def _python_contexts(text: str) -> tuple[str, ...]:
    """For each ``${params.x}`` in ``text``, in order: where it stands (code, comment, a
    string, a bytes literal). Found by Python's own tokenizer on the text with every
    placeholder swapped for a marker name."""
    nonce = 0
    while f"_kiok{nonce}_" in text:
        nonce += 1
    prefix = f"_kiok{nonce}_"
    count = 0

    def mark(m: re.Match[str]) -> str:
        nonlocal count
        if m.group(1) != "params":
            return f"{prefix}c"
        count += 1
        return f"{prefix}p{count - 1}_"

    marked = _ANY_REF.sub(mark, text)
    if not count:
        return ()
    marker = re.compile(re.escape(prefix) + r"p(\d+)_")
    kinds: dict[int, str] = {}
    string_prefix = ""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(marked).readline):
            name = tokenize.tok_name[tok.type]
            if name == "FSTRING_START":  # Python 3.12+: f-strings come in parts
                string_prefix = tok.string
            if prefix not in tok.string:
                continue
            if name == "STRING":
                string_prefix = tok.string[: len(tok.string) - len(tok.string.lstrip("rRbBuUfF"))]
                if "f" in string_prefix.lower() and _in_fstring_field(tok.string, marker):
                    raise TaskError(
                        "a ${params...} placeholder inside an f-string's {...} is code this Python "
                        "cannot hold a literal in; assign it first (n = ${params.n}) and use {n}"
                    )
                kind = _string_kind(string_prefix)
            elif name == "FSTRING_MIDDLE":
                kind = _string_kind(string_prefix.rstrip("'\""))
            elif name == "COMMENT":
                kind = _COMMENT_PY
            elif name == "NAME" and marker.fullmatch(tok.string):
                kind = _CODE
            else:
                raise TaskError(
                    f"a ${{params...}} placeholder is part of the python code {tok.string[:40]!r}; "
                    "put it alone, or inside a string, or read os.environ['KIOK_PARAM_<NAME>']"
                )
            for m in marker.finditer(tok.string):
                kinds[int(m.group(1))] = kind
    except (tokenize.TokenError, SyntaxError) as e:
        raise TaskError(f"cannot place params in this python script ({e}); fix its syntax") from None
    return tuple(kinds.get(i, _CODE) for i in range(count))


def _in_fstring_field(literal: str, marker: re.Pattern[str]) -> bool:
    """Whether a marker in the f-string ``literal`` (one token: Python < 3.12) stands in a
    replacement field ``{...}`` rather than in its text (``{{`` and ``}}`` are text)."""
    inside = {m.start() for m in marker.finditer(literal)}
    depth, i = 0, 0
    while i < len(literal):
        if i in inside and depth > 0:
            return True
        ch = literal[i]
        if depth == 0 and ch in "{}" and literal[i + 1 : i + 2] == ch:
            i += 2
            continue
        depth += 1 if ch == "{" else -1 if ch == "}" and depth > 0 else 0
        i += 1
    return False


def _string_kind(prefix: str) -> str:
    lowered = prefix.lower()
    if "r" in lowered:
        raise TaskError(
            "a ${params...} placeholder inside a raw string cannot hold data safely; use a plain "
            "string or os.environ['KIOK_PARAM_<NAME>']"
        )
    return _BYTES if "b" in lowered else _STR


def _python_value(kind: str, value: Any, name: str) -> str:
    if kind == _BYTES:
        return "".join(f"\\x{b:02x}" for b in _text(value).encode())
    if kind in (_STR, _COMMENT_PY):
        return _escape(_text(value))
    return _literal(value)


def _escape(text: str) -> str:
    """Every character as an escape: nothing in the result can end a string literal."""
    out = []
    for ch in text:
        code = ord(ch)
        out.append(
            f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
        )
    return "".join(out)


def _literal(value: Any) -> str:
    """A Python literal of a JSON value, strings escaped as in ``_escape``."""
    if isinstance(value, str):
        return f"'{_escape(value)}'"
    if value is None or isinstance(value, bool | int):
        return repr(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise TaskError("a param that is NaN or infinite has no python literal")
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_literal(str(k))}: {_literal(v)}" for k, v in value.items()) + "}"
    raise TaskError(f"a param of type {type(value).__name__} has no python literal")


# --- json ------------------------------------------------------------------------------------


def _json_inside_string(text: str, starts: tuple[int, ...], ends: tuple[int, ...]) -> list[bool]:
    end_of = dict(zip(starts, ends, strict=True))
    found: dict[int, bool] = {}
    inside, i = False, 0
    while i < len(text):
        if i in end_of:
            found[i] = inside
            i = end_of[i]
            continue
        ch = text[i]
        if inside and ch == "\\":
            i += 2
            continue
        if ch == '"':
            inside = not inside
        i += 1
    return [found.get(s, False) for s in starts]
