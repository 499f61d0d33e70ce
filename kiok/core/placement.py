"""Placing ``${params.x}`` into a task body as *data*, never as code (DESIGN.md §4).

A param value comes from whoever may trigger the DAG, who may not change what it runs. So
a value must never become text that the task's interpreter parses as code. Each place a
placeholder can stand gets its own rule, chosen by the text's language (``Context``) and,
within it, by where the placeholder sits:

- ``SHELL``: a reference to the ``KIOK_PARAM_<NAME>`` environment variable the task gets.
  The shell expands it, and an expansion is never parsed again as commands. Unquoted it
  becomes ``"${KIOK_PARAM_X}"`` (one word, no globbing). Inside double quotes, a heredoc or
  arithmetic ``$((...))`` it becomes ``${KIOK_PARAM_X}``. Where bash reads the expansion
  again (``_restriction``: arithmetic, a variable name a builtin expands again), the value
  is restricted (``Restriction``): bash would run command substitutions found then,
  whatever the quoting. Inside single quotes (``'...'``, ``$'...'``) it is refused
  (``single_quoted``): quoted text is what a script hands another program as code (``sh -c
  '...'``, ``trap '...'``, awk, sed, jq, ``python -c``), and any form that puts the value's
  characters there would make them that program's code; the DAG is refused at registration
  (``kiok.dag.validate``), an attempt of one registered before fails saying so.
  A command substitution (``$(...)``, backticks) is a new unquoted context, also inside
  double quotes or a heredoc; ``#{...}`` (a date by the time the shell reads the script)
  starts no comment; after a backslash, the placeholder is the text ``${KIOK_PARAM_X}``
  (in backticks, where the shell drops that backslash, ``${KIOK_PARAM_X+"${KIOK_PARAM_X}"}``).
- ``PYTHON``: inside a string literal, every character is written as an escape
  (``\\x41``), which cannot end the string. In code, a Python literal of the value. In a
  comment, the escaped text. A raw string, or a placeholder that is part of a name, is
  refused: neither can hold data safely.
- ``URL``: percent-encoded (dots too, in a value of dots only: no ``..`` segment).
  ``FORM``: form-encoded.
- ``JSON``: inside a JSON string, JSON-escaped. Elsewhere, the value as a JSON literal.
- ``TEXT``: verbatim. Used only where no interpreter reads the text (an HTTP method).

Pure functions; ``kiok.core.placeholders.resolve`` calls ``place`` and keeps the results
opaque, so a value holding ``#{...}`` or ``${secret.x}`` is never expanded.
"""

from __future__ import annotations

import codecs
import functools
import io
import json
import re
import tokenize
from collections.abc import Mapping, Sequence
from enum import IntEnum, StrEnum
from typing import Any
from urllib.parse import quote, quote_plus

from kiok.errors import TaskError

__all__ = [
    "Context",
    "ParamRef",
    "Restriction",
    "date_function_end",
    "is_integer",
    "place",
    "restricted_names",
    "shell_value_problem",
    "single_quoted",
    "single_quoted_problem",
    "value_problem",
]


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
        kinds, restrictions = _shell_contexts(text, tuple(r[0] for r in refs), tuple(r[1] for r in refs))
        for (_, _, name), kind, restriction in zip(refs, kinds, restrictions, strict=True):
            if kind in _QUOTED:
                raise TaskError(single_quoted_problem(name))
            problem = value_problem(name, values[name], restriction)
            if problem is not None:
                raise TaskError(problem)
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
        return [_url_quote(_text(values[name])) for _, _, name in refs]
    if context is Context.FORM:
        return [quote_plus(_text(values[name]), safe="") for _, _, name in refs]
    if context is Context.JSON:
        inside = _json_inside_string(text, tuple(r[0] for r in refs), tuple(r[1] for r in refs))
        return [
            json.dumps(_text(values[name]))[1:-1] if in_string else json.dumps(values[name])
            for (_, _, name), in_string in zip(refs, inside, strict=True)
        ]
    return [_text(values[name]) for _, _, name in refs]


def _url_quote(text: str) -> str:
    """Percent-encoded; a value of dots only (``.``, ``..``) too, though ``.`` is unreserved:
    as it is, it is a dot segment, which a client removes with the segment before it."""
    if text and not text.strip("."):
        return "%2E" * len(text)
    return quote(text, safe="")


def _env_name(name: str) -> str:
    return "KIOK_PARAM_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# --- shell -------------------------------------------------------------------------------------

_UNQUOTED, _SINGLE, _DOUBLE, _ANSI, _COMMENT, _HEREDOC, _HEREDOC_LITERAL, _ARITH, _ESCAPED = range(9)
#: After ``\`` in backticks, unquoted: the shell drops the backslash, so the form must begin
#: with ``$``; inside double quotes its quotes are written ``\"``.
_TICK_ESCAPED, _TICK_ESCAPED_DQ = range(9, 11)
#: Inside single quotes: no form is safe (``single_quoted``).
_QUOTED = frozenset((_SINGLE, _ANSI))
_SHELL_FORMS = {
    _UNQUOTED: '"${{{var}}}"',
    _DOUBLE: "${{{var}}}",
    _COMMENT: "${{{var}}}",
    _HEREDOC: "${{{var}}}",
    _HEREDOC_LITERAL: "${{{var}}}",
    _ARITH: "${{{var}}}",
    _ESCAPED: "${{{var}}}",  # after a backslash: the text ${KIOK_PARAM_X}, as the author wrote it
    _TICK_ESCAPED: '${{{var}+"${{{var}}}"}}',
    _TICK_ESCAPED_DQ: '${{{var}+\\"${{{var}}}\\"}}',
}
_WORD_END = frozenset(" \t\n;&|<>()")
#: What a frame of ``frames`` in ``_shell_contexts`` was opened by: ``$(``, a backtick,
#: ``${``, or an arithmetic command ``((``.
_SUBST, _BACKTICK, _BRACE, _ARITH_CMD = range(4)
#: The characters the analyser acts on (a placeholder starts with ``$``), and the words
#: ``case`` and ``esac``; it skips the rest.
_SHELL_SPECIAL = frozenset("\\'\"$#<\n(){}`[]")
_CLOSE = {"(": ")", "[": "]"}
#: ``case WORD in``: the word may hold quotes, ``$(...)``, backticks and ``${...}``
#: (``case "$(uname -s)" in``), whose blanks and parentheses are its own.
_CASE = re.compile(
    # each alternative starts differently (no word matches two ways: linear time)
    r"case[ \t]+(?:\"[^\"]*\"|'[^']*'|`[^`]*`|\$\([^()]*\)|\$\{[^}]*\}|\$(?![({])|[^\s;&|()<>\"'`$])+"
    r"[ \t\n]+in(?=[\s;])"
)
_ESAC = re.compile(r"esac(?=[\s;&|)]|\Z)")
_SHELL_NEXT = re.compile(
    "[" + re.escape("".join(sorted(_SHELL_SPECIAL))) + r"]|(?<![^\s;&|()<>`])(?:case|esac)(?!\w)"
)


class Restriction(IntEnum):
    """What a param value may hold where a placeholder stands in a shell script: bash reads
    some places again after expanding them (``kiok.core.placement._restriction``)."""

    #: Any value: the expansion is never parsed again.
    NONE = 0
    #: Bash evaluates it as arithmetic (``$((...))``, ``[[ -eq ]]``, ``let``...): an integer.
    INTEGER = 1
    #: Part of a variable name or subscript bash expands again (``unset "a[...]"``,
    #: ``printf -v``, ``read``, ``declare``, ``a=([...]=x)``): no ``$`` or backtick.
    NAME = 2


#: An integer as bash's arithmetic reads it: decimal or hexadecimal, nothing it could expand.
_INTEGER = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F]+|[0-9]+)")
#: An expansion bash makes: ``$`` and a name, ``(``, ``{``, ``[`` or a special parameter (a
#: digit, a positional parameter of the task's own shell, is empty there); a backtick
#: (``shell_value_problem``).
_EXPANSION = re.compile(r"\$[A-Za-z_({\[@*#?$!-]|`")
#: How far before a placeholder ``_restriction`` looks for what opens its context: each
#: check reads a bounded window, so a long script costs time linear in its placeholders.
_WINDOW = 512
#: ``${name:`` (a substring offset or slice, not ``:-`` and its kin) at an innermost ``${``.
_OFFSET = re.compile(r"\$\{(?:!?[A-Za-z_]\w*(?:\[[^\]]*\])?|[@*$!?-]|\d+):(?![-=+?])")
#: The words that may come before a command's name (``if let ...``, ``command read ...``).
_PREFIX = r"\s*(?:(?:then|do|else|elif|if|while|until|command|builtin|time|!|\(|\{)\s*)*"
#: A command that evaluates its arguments as arithmetic, at the start of a command.
_ARITHMETIC_COMMAND = re.compile(_PREFIX + r"(?:let\s|(?:declare|typeset|local)\s+(?:-\w+\s+)*-\w*i)")
#: Builtins whose arguments are variable names, expanded again with their subscripts.
_NAME_COMMAND = re.compile(
    _PREFIX
    + r"(?:unset|read|declare|typeset|local|export|readonly|mapfile|readarray|(?:test|\[)\s[^;&|]*-v)\s"
)
_PRINTF_NAME = re.compile(_PREFIX + r"printf\s+(?:-\w+\s+)*-v\s+\S*\Z")
#: ``name=(`` or ``name+=(``: a compound assignment, whose ``[subscript]=`` words an
#: indexed array expands again.
_COMPOUND = re.compile(r"[A-Za-z_]\w*\+?=\(")
_CONDITIONAL_OPEN = re.compile(r"(?:^|[\s;&|(!])\[\[\s")
_CONDITIONAL_CLOSE = re.compile(r"\s\]\](?=[\s;&|)]|\Z)")
_ARITHMETIC_TESTS = frozenset(("-eq", "-ne", "-lt", "-le", "-gt", "-ge"))
#: ``((`` right after one of these is an arithmetic command too (``for((i=0; ...))``).
_BEFORE_ARITH_CMD = re.compile(r"(?:^|[\s;&|(])(?:for|if|elif|while|until)\Z")


def restricted_names(text: str, refs: Sequence[ParamRef]) -> dict[str, Restriction]:
    """The names of ``refs`` in shell ``text`` whose values ``place`` restricts, and how
    (the strictest where a name stands in several places)."""
    _, restrictions = _shell_contexts(text, tuple(r[0] for r in refs), tuple(r[1] for r in refs))
    out: dict[str, Restriction] = {}
    for (_, _, name), restriction in zip(refs, restrictions, strict=True):
        if restriction is not Restriction.NONE:
            out[name] = max(out.get(name, restriction), restriction)
    return out


def single_quoted(text: str, refs: Sequence[ParamRef]) -> list[str]:
    """The names of ``refs`` in shell ``text`` that stand inside single quotes (``'...'`` or
    ``$'...'``), in order: ``place`` refuses them."""
    kinds, _ = _shell_contexts(text, tuple(r[0] for r in refs), tuple(r[1] for r in refs))
    return [name for (_, _, name), kind in zip(refs, kinds, strict=True) if kind in _QUOTED]


def single_quoted_problem(name: str) -> str:
    """Why a ``${params.x}`` inside single quotes in a shell script is refused, and what to write."""
    return (
        f"${{params.{name}}} stands inside single quotes, whose text a script often hands another "
        "program as code (sh -c '...', trap '...', awk, sed, jq, python -c), which would run a value "
        f'placed there: have that program read the value as data ("${_env_name(name)}" in a shell\'s '
        f'code, awk -v x="${{params.{name}}}", jq --arg x "${{params.{name}}}"); for a plain command '
        f'(echo, printf), write it outside the quotes ("${{params.{name}}}")'
    )


def is_integer(value: Any) -> bool:
    """Whether ``value`` may stand in shell arithmetic: an int, or a string of one."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and _INTEGER.fullmatch(value) is not None)


def value_problem(name: str, value: Any, restriction: Restriction) -> str | None:
    """Why ``value`` of param ``name`` may not stand where ``restriction`` says; None if it may."""
    if restriction is Restriction.INTEGER and not is_integer(value):
        return (
            f"param {name!r} stands where the shell evaluates arithmetic ($((...)), ((...)), "
            "[[ ... -eq ... ]], a substring offset, let, declare -i), which runs code hidden in "
            "a value: its value must be an integer (declare it type: integer)"
        )
    if restriction is Restriction.NAME and any(c in _text(value) for c in "$`"):
        return (
            f"param {name!r} is part of a variable name that the shell expands again (unset, "
            "read, printf -v, declare...): its value may not hold $ or a backtick"
        )
    return None


def shell_value_problem(name: str, value: Any) -> str | None:
    """Why a shell task may not get ``value`` of param ``name`` at all; None if it may.

    Bash expands a value again, and runs its command substitutions, wherever it takes the
    value as part of a variable name or an array subscript: arithmetic, an indexed array's
    subscript the script wrote around ``${params.x}``, ``read``/``unset``/``printf -v``/
    ``declare`` of ``"a[${params.x}]"``, ``[[ -v ]]``, ``${!ref}`` and namerefs of such a name.
    A text gets there in more ways than any reading of a script sees (``$((KIOK_PARAM_X))``
    written by hand, a name built in a variable first, a subscript put together from several
    params). So a value that bash could expand at all is refused outright: one holding ``$``
    followed by a name, ``(``, ``{``, ``[`` or a special parameter, or a backtick. A price
    (``$5``) or a regular expression's ``$`` end passes. Linear: one search."""
    if _EXPANSION.search(_text(value)) is None:
        return None
    return (
        f"param {name!r} holds text bash would expand ('$' followed by a name, '(', '{{', '[' or a "
        "special parameter, or a backtick), which it runs wherever the value becomes part of a variable "
        "name or an array subscript: refused for shell tasks"
    )


def _restriction(text: str, start: int, end: int, state: int, top: int | None) -> Restriction:
    """What bash does again with the placeholder at ``start:end`` after expanding it. In
    ``$((...))``/``$[...]`` and ``((...))`` the analyser's state says; an operand of
    ``[[ ... -eq ... ]]``, a substring offset, ``let``/``declare -i`` arguments, and the
    names given to ``unset``/``read``/``printf -v``/``declare`` are recognised in the
    ``_WINDOW`` characters before it. What this misses, ``shell_value_problem`` still
    refuses at its root: a value that holds text bash could expand."""
    if state == _ARITH or (top == _ARITH_CMD and state in (_UNQUOTED, _DOUBLE)):
        return Restriction.INTEGER
    if state not in (_UNQUOTED, _DOUBLE, _HEREDOC):
        return Restriction.NONE
    low = max(0, start - _WINDOW)
    line = text[text.rfind("\n", low, start) + 1 or low : start]
    opened = _innermost_brace(line)
    if opened >= 0 and _OFFSET.match(line, opened):
        return Restriction.INTEGER
    if state == _HEREDOC:
        return Restriction.NONE
    command = line[max(map(line.rfind, (";", "&", "|", "{ ", "{\t"))) + 1 :]
    if _ARITHMETIC_COMMAND.match(command):
        return Restriction.INTEGER
    word = line[max(map(line.rfind, " \t;&|(")) + 1 :]
    if ("[" in word and _NAME_COMMAND.match(command)) or _PRINTF_NAME.match(command):
        return Restriction.NAME
    if word.startswith(("[", '"[', "'[")) and "]" not in word and _COMPOUND.search(line, line.rfind(")") + 1):
        return Restriction.NAME  # a subscript in ``a=([...]=x)``: bash expands it again
    return Restriction.INTEGER if _conditional_operand(text, start, end) else Restriction.NONE


def _innermost_brace(line: str) -> int:
    """Where the innermost ``${`` still open at the end of ``line`` starts; -1: none. Steps
    from brace to brace (``rfind``), not character by character."""
    depth, k = 0, len(line)
    while (opening := line.rfind("${", 0, k)) >= 0:
        closing = line.rfind("}", opening, k)
        if closing >= 0:  # a ``}`` nearer the end than that ``${``: it closes one
            depth, k = depth + 1, closing
        elif depth == 0:
            return opening
        else:
            depth, k = depth - 1, opening
    return -1


def _conditional_operand(text: str, start: int, end: int) -> bool:
    """Whether the placeholder at ``start:end`` is an operand of an arithmetic test of an
    open ``[[ ... ]]`` (which may span lines)."""
    before = text[max(0, start - _WINDOW) : start]
    if "[[" not in before:
        return False
    opened = list(_CONDITIONAL_OPEN.finditer(before))
    if not opened or _CONDITIONAL_CLOSE.search(before, opened[-1].end() - 1):
        return False
    rest = text[end : end + _WINDOW]
    left = [w for w in before.split() if w != "\\"]
    right = [w for w in rest.split() if w != "\\"]
    previous = left[-2:-1] if before and not before[-1].isspace() else left[-1:]
    following = right[1:2] if rest and not rest[0].isspace() else right[:1]
    return any(word in _ARITHMETIC_TESTS for word in previous + following)


@functools.lru_cache(maxsize=256)
def _shell_contexts(
    text: str, starts: tuple[int, ...], ends: tuple[int, ...]
) -> tuple[list[int], list[Restriction]]:
    """The quoting state at each placeholder start, and what bash does again with its
    expansion (``_restriction``). Not a full shell parser: it follows
    quotes, escapes, comments, heredocs, command substitutions (``$(...)``, backticks: a new
    unquoted context, even inside double quotes or a heredoc), ``${...}`` and ``((...))``,
    which decide how an expansion is written. Every form is an expansion, so a misjudged
    state never runs a value as shell code; but a bare form where the shell is unquoted is
    split into words, and one value could become several arguments (``find ... -exec``)."""
    end_of = dict(zip(starts, ends, strict=True))
    found: dict[int, int] = {}
    restricted: dict[int, Restriction] = {}
    pending: list[tuple[str, bool, bool]] = []  # heredocs opened on this line
    bodies: list[tuple[str, bool, bool]] = []  # heredocs whose bodies are being read
    frames: list[list[int]] = []  # [what opened it, state it returns to, open (, open case]
    state, i, n = _UNQUOTED, 0, len(text)
    outer, depth, bracket = _UNQUOTED, 0, "("  # where $((...)) was opened, its open brackets
    resume, escaped = _UNQUOTED, -1  # state after the heredoc bodies; index after a \x
    # After a backslash-newline, which the shell removes: the index, and whether a word
    # started at the backslash (what follows joins what came before it).
    joined, joined_start = -1, False

    def body_line(i: int) -> tuple[int, int]:
        """Where reading goes on from the start of a heredoc body line ``i``, and in what state."""
        while bodies:
            delimiter, literal, strip = bodies[0]
            eol = text.find("\n", i)
            eol = n if eol == -1 else eol
            line = text[i:eol]
            if (line.lstrip("\t") if strip else line) != delimiter:
                return i, _HEREDOC_LITERAL if literal else _HEREDOC
            bodies.pop(0)
            i = eol + 1
        return i, resume

    while i < n:
        if i in end_of:
            found[i] = state
            restricted[i] = _restriction(text, i, end_of[i], state, frames[-1][0] if frames else None)
            i = end_of[i]
            continue
        ch = text[i]
        if ch not in _SHELL_SPECIAL:  # nothing that changes the state: go to what may
            found_next = _SHELL_NEXT.search(text, i)
            if found_next is None or found_next.start() > i:
                i = found_next.start() if found_next else n
                continue
        if ch == "#" and text.startswith("{", i + 1):
            # kiok's date function: text by the time the shell reads the script, not a
            # comment; a placeholder in its arguments lands where the function stands
            end = date_function_end(text, i) + 1
            for start in range(i, end):
                if start in end_of:
                    found[start] = state
            i = end
            continue
        top = frames[-1][0] if frames else None
        if ch == "\\" and top == _BACKTICK and state in (_UNQUOTED, _DOUBLE):
            after = text[i + 1 : i + 2]
            if after == "$" and i + 1 in end_of:
                outside = frames[-1][1]
                found[i + 1] = (
                    _ESCAPED
                    if state == _DOUBLE
                    else _TICK_ESCAPED_DQ
                    if outside == _DOUBLE
                    else _TICK_ESCAPED
                )
                i = end_of[i + 1]
                continue
            if after == "$" or (after == '"' and frames[-1][1] == _DOUBLE):
                i += 1  # the shell drops this backslash before it reads the command inside
                continue
        if state == _HEREDOC_LITERAL:
            i, state = body_line(i + 1) if ch == "\n" else (i + 1, state)
            continue
        if state in (_UNQUOTED, _DOUBLE, _HEREDOC) and text.startswith(("$((", "$["), i):
            bracket = text[i + 1]  # $[...] is bash's old form of $((...))
            outer, state, depth = state, _ARITH, 2 if bracket == "(" else 1
            i += 1 + depth
            continue
        if state == _ARITH:
            depth += {bracket: 1, _CLOSE[bracket]: -1}.get(ch, 0)
            if depth == 0:
                state = outer
            i += 1
            continue
        if state in (_UNQUOTED, _DOUBLE, _HEREDOC):
            if text.startswith("$(", i):
                frames.append([_SUBST, state, 0, 0])
                state, i = _UNQUOTED, i + 2
                continue
            if ch == "`":
                if state == _UNQUOTED and top == _BACKTICK:
                    state = frames.pop()[1]
                else:
                    frames.append([_BACKTICK, state, 0, 0])
                    state = _UNQUOTED
                i += 1
                continue
        if ch == "\\" and state in (_UNQUOTED, _DOUBLE, _ANSI, _HEREDOC) and i + 1 in end_of:
            found[i + 1] = _ESCAPED  # quoting it would end the quote the backslash escapes
            i = end_of[i + 1]
            continue
        if state == _HEREDOC:
            if ch == "\\":
                i += 2
            elif ch == "\n":
                i, state = body_line(i + 1)
            else:
                i += 1
            continue
        if state == _UNQUOTED:
            word_start = (
                joined_start if i == joined else i == 0 or (text[i - 1] in _WORD_END and escaped != i)
            )
            if ch == "\\":
                if text.startswith("\n", i + 1):
                    joined, joined_start = i + 2, word_start
                i += 2
                escaped = i
                continue
            if ch == "'":
                state = _SINGLE
            elif ch == '"':
                state = _DOUBLE
            elif ch == "$" and text.startswith("'", i + 1):
                state, i = _ANSI, i + 2
                continue
            elif ch == "$" and text.startswith("{", i + 1):
                frames.append([_BRACE, state, 0, 0])
                i += 2
                continue
            elif ch == "}" and top == _BRACE:
                state = frames.pop()[1]
            elif text.startswith("((", i) and (
                word_start or _BEFORE_ARITH_CMD.search(text, max(0, i - 6), i)
            ):
                frames.append([_ARITH_CMD, state, 0, 0])
                i += 2
                continue
            elif ch == "(" and top in (_SUBST, _ARITH_CMD):
                frames[-1][2] += 1
            elif word_start and frames and _CASE.match(text, i):
                frames[-1][3] += 1  # its patterns end in ")", which then closes no $(
            elif word_start and frames and frames[-1][3] and _ESAC.match(text, i):
                frames[-1][3] -= 1
            elif ch == ")" and top in (_SUBST, _ARITH_CMD):
                if frames[-1][2] or frames[-1][3]:
                    frames[-1][2] -= 1 if frames[-1][2] else 0
                else:
                    state = frames.pop()[1]
                    i += 2 if top == _ARITH_CMD and text.startswith("))", i) else 1
                    continue
            elif ch == "#" and word_start and top not in (_BRACE, _ARITH_CMD):
                state = _COMMENT
            elif text.startswith("<<<", i):  # a here-string: its word is read as any other
                i += 3
                continue
            elif (
                text.startswith("<<", i) and not text.startswith("<<<", i) and top not in (_BRACE, _ARITH_CMD)
            ):
                i = _heredoc_start(text, i + 2, pending)
                continue
            elif ch == "\n" and pending:
                bodies, resume = pending[:], state
                pending.clear()
                i, state = body_line(i + 1)
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
    return [found.get(s, _UNQUOTED) for s in starts], [restricted.get(s, Restriction.NONE) for s in starts]


def date_function_end(text: str, start: int) -> int:
    """Where the ``#{...}`` at ``start`` ends: the index of its ``}`` (``len(text)`` when it
    is not closed). A ``}`` inside a quoted argument does not end it. One reading, for
    ``kiok.core.placeholders`` (which expands it) and the shell analyser here."""
    end, quote = start + 2, ""
    while end < len(text) and (quote or text[end] != "}"):
        if quote and text[end] == quote:
            quote = ""
        elif not quote and text[end] in "'\"":
            quote = text[end]
        end += 1
    return end


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
    _refuse_source_encoding(text)
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


#: PEP 263's source encoding declaration, looked for on a script's first two lines.
_CODING = re.compile(r"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)", re.ASCII)
#: Encodings that decode the ASCII escapes values are placed as to themselves.
_PLAIN_ENCODINGS = frozenset(["utf-8", "utf-8-sig", "ascii", "iso8859-1"])


def _refuse_source_encoding(text: str) -> None:
    """``TaskError`` for a script that declares another source encoding: the interpreter
    decodes the script with it before parsing, and one such as ``unicode_escape`` turns the
    escapes a value is placed as (``\\x22``) back into quotes, ending its string."""
    for number, line in enumerate(re.split(r"\r\n|\r|\n", text, maxsplit=2)[:2], 1):
        declared = _CODING.match(line)
        if declared is None:
            continue
        try:
            name = codecs.lookup(declared.group(1)).name
        except LookupError:
            name = declared.group(1)
        if name not in _PLAIN_ENCODINGS:
            raise TaskError(
                f"this python script declares its source encoding {declared.group(1)!r} (line "
                f"{number}), which could decode a placed ${{params...}} value into code: remove the "
                "declaration (scripts are UTF-8), or read os.environ['KIOK_PARAM_<NAME>']"
            )
        return


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
