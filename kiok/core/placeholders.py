"""Placeholder resolution in task bodies and config values, done by the worker just before a run.

Two passes, in this order (reference-inventory §1.6):

0. ``${run.interval.start}``/``${run.interval.end}`` (``kiok.core.run_interval``): kiok's
   own ISO 8601 times, never user data, so they are written as they are.
1. ``${params.x}``, ``${conn.<id>.<key>}`` and ``${secret.<name>}`` (= ``${conn.<name>.value}``).
   Other ``${...}`` (shell variables such as ``${HOME}``) are not ours and are left alone.
2. ``#{fn(args)}`` date functions, evaluated at ``now_ms`` in ``tz``.

Params are data, never code: each ``${params.x}`` is placed by ``kiok.core.placement``
according to the text's ``Context`` (an environment variable reference in a shell script,
an escaped literal in Python, percent-encoded in a URL, JSON-escaped in a JSON body).
Placed params and connection values are opaque to pass 2, so a value containing ``#{`` or
``${secret.x}`` reaches the task unchanged. A DAG's own param defaults may use date
functions (``param_values`` expands them); trigger args are taken as they are. Nothing here
does I/O or reads the clock; the caller passes ``now_ms`` and a ``lookup_conn`` callable.
Failures raise ``TaskError``.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from kiok.core.cron import load_zone
from kiok.core.placement import (
    Context,
    ParamRef,
    Restriction,
    date_function_end,
    place,
    restricted_names,
    single_quoted,
)
from kiok.errors import TaskError

__all__ = [
    "Context",
    "has_placeholders",
    "param_env",
    "param_names",
    "param_values",
    "references",
    "resolve",
    "run_value_names",
]

#: Our references only: params/conn/secret. The body is parsed separately for clear errors.
_REF = re.compile(r"\$\{(params|conn|secret)\.([^}]*)\}")
#: ``${run.<name>}``: what kiok knows of the run (``kiok.core.run_interval``).
_RUN_REF = re.compile(r"\$\{run\.([^}]*)\}")
_NAME = re.compile(r"^[^\s.{}]+\Z")
_KEY = re.compile(r"^[^\s{}]+\Z")

LookupConn = Callable[[str, str], str]

#: Bytes of param values (before encoding) one text may have placed in it: a DAG that repeats
#: ``${params.x}`` must not let whoever triggers it make the worker build a text of any size
#: (a thousand references to a 64 KiB arg: 192 MB). Shell scripts place a variable reference.
MAX_PLACED_BYTES = 1024 * 1024


#: The most a param's value may be as its task gets it, and all of a run's args (or all of
#: its DAG's defaults) together (``kiok.dag.params``): each is an environment variable, and
#: Linux takes one of at most 128 KiB and all of them with the arguments in 2 MiB.
MAX_PARAM_BYTES = 64 * 1024
MAX_PARAMS_BYTES = 256 * 1024


def param_values(
    defaults: Mapping[str, Any], args: Mapping[str, Any] | None, *, now_ms: int, tz: str = "UTC"
) -> dict[str, Any]:
    """The values a run's tasks get, in ``${params.x}`` and ``KIOK_PARAM_X`` alike: trigger
    args as given, over the DAG's defaults with their ``#{date functions}`` evaluated.
    ``TaskError`` when evaluated defaults pass the bounds registration held them to (a
    function's text can be ten times its call: ``#{nowFormatted('VVZ')}``): one clear line,
    where the task would not have started ("Argument list too long")."""
    args = args or {}
    out: dict[str, Any] = {}
    evaluated = False
    for name, value in defaults.items():
        if name not in args:
            if isinstance(value, str) and "#{" in value:
                value = _expand_default(value, now_ms, tz)
                evaluated = True
            out[name] = value
    if evaluated:
        _bound_defaults(out)
    out.update(args)
    return out


def _bound_defaults(values: Mapping[str, Any]) -> None:
    over = past_bounds(values)
    if over is None:
        return
    name, size = over
    if name is not None:
        raise TaskError(
            f"param {name!r}: its default is {size} bytes once its date functions are evaluated, "
            f"more than {MAX_PARAM_BYTES}"
        )
    raise TaskError(
        f"the DAG's param defaults come to more than {MAX_PARAMS_BYTES} bytes once their "
        "date functions are evaluated"
    )


def past_bounds(values: Mapping[str, Any]) -> tuple[str | None, int] | None:
    """The first of ``values`` past the params' bounds as its task gets them: (its name, its
    size) for a value past ``MAX_PARAM_BYTES``, (None, the running total) when they come to
    more than ``MAX_PARAMS_BYTES`` with their variables' names; None within both. Registering
    a DAG's defaults and evaluating them for an attempt decide alike."""
    total = 0
    for name, value in values.items():
        size = param_bytes(value)
        if size > MAX_PARAM_BYTES:
            return name, size
        total += size + variable_bytes(name)
        if total > MAX_PARAMS_BYTES:
            return None, total
    return None


def _expand_default(value: str, now_ms: int, tz: str) -> str:
    if "#{" not in value:
        return value
    try:
        zone = load_zone(tz)
    except ValueError as e:
        raise TaskError(str(e)) from None
    return _expand_dates(value, _at(now_ms).astimezone(zone))


def _at(now_ms: int) -> datetime:
    return datetime.fromtimestamp(now_ms // 1000, UTC).replace(microsecond=now_ms % 1000 * 1000)


def param_names(text: str) -> set[str]:
    """The names ``${params.<name>}`` placeholders in ``text`` refer to."""
    if "${params." not in text:
        return set()
    return {m.group(2) for m in _REF.finditer(text) if m.group(1) == "params"}


def shell_restricted_params(text: str) -> dict[str, Restriction]:
    """The params a shell ``text`` places where bash reads their values again (arithmetic,
    a variable name), and how ``resolve`` restricts their values there: a trigger can be
    refused up front rather than its attempts failing."""
    if "${params." not in text:
        return {}
    refs = [
        (m.start(), m.end(), m.group(2))
        for m in _REF.finditer(text)
        if m.group(1) == "params" and _KEY.match(m.group(2))
    ]
    return restricted_names(text, refs)


def shell_single_quoted_params(text: str) -> list[str]:
    """The params a shell ``text`` places inside single quotes, which ``resolve`` refuses
    (``kiok.core.placement.single_quoted``): a DAG holding one is refused at registration."""
    if "${params." not in text:
        return []
    refs = [
        (m.start(), m.end(), m.group(2))
        for m in _REF.finditer(text)
        if m.group(1) == "params" and _KEY.match(m.group(2))
    ]
    return single_quoted(text, refs)


def run_value_names(text: str) -> set[str]:
    """The names ``${run.<name>}`` placeholders in ``text`` refer to (known or not)."""
    if "${run." not in text:
        return set()
    return {m.group(1) for m in _RUN_REF.finditer(text)}


def param_env(params: Mapping[str, Any]) -> dict[str, str]:
    """``KIOK_PARAM_<NAME>`` variables: name upper-cased, non-alphanumerics turned into ``_``;
    non-string values JSON-encoded (as config values are)."""
    return {"KIOK_PARAM_" + re.sub(r"[^A-Z0-9]", "_", k.upper()): _text(v) for k, v in params.items()}


def references(text: str) -> set[tuple[str, str]]:
    """The ``(conn_id, key)`` pairs ``text`` refers to; ``${secret.n}`` counts as ``(n, "value")``.

    Malformed references are skipped here (``resolve`` reports them), so this can be used to
    decide which connection values to ship with a task without failing early.
    """
    out: set[tuple[str, str]] = set()
    if not has_placeholders(text):
        return out
    for m in _REF.finditer(text):
        with_conn = _conn_ref(m.group(1), m.group(2))
        if with_conn is not None:
            out.add(with_conn)
    return out


def has_placeholders(text: str) -> bool:
    """Whether ``resolve`` could change ``text`` (most scripts: it cannot)."""
    return "${" in text or "#{" in text


def resolve(
    text: str,
    *,
    params: Mapping[str, Any],
    lookup_conn: LookupConn | None,
    now_ms: int,
    tz: str = "UTC",
    context: Context = Context.TEXT,
    run: Mapping[str, str] | None = None,
) -> str:
    """``text`` with every placeholder replaced; raises ``TaskError`` naming what failed.

    ``run`` holds the ``${run.<name>}`` values (``kiok.core.run_interval.interval_values``);
    ``None`` means the text is not resolved for one run (a notification).

    ``params`` are the values from ``param_values``, placed as data for ``context``
    (``kiok.core.placement``). ``lookup_conn(conn_id, key)`` returns the value or raises
    ``KeyError`` (or ``TaskError``) when the connection or key does not exist; ``None``
    means no connections are available.
    """
    if not has_placeholders(text):
        return text
    try:
        zone = load_zone(tz)
    except ValueError as e:
        raise TaskError(str(e)) from None
    if "${run." in text:
        text = _RUN_REF.sub(lambda m: _run_value(run, m), text)
    opaque: list[str] = []
    marker = _marker(text)
    placed = _place_params(text, params, context)

    def first_pass(m: re.Match[str]) -> str:
        kind, body = m.group(1), m.group(2)
        if kind == "params":
            opaque.append(placed[m.start()])
            return f"{marker}{len(opaque) - 1}{marker}"
        ref = _conn_ref(kind, body)
        if ref is None:
            form = "${conn.<id>.<key>}" if kind == "conn" else "${secret.<name>}"
            raise TaskError(f"invalid placeholder {m.group(0)}: use {form}")
        opaque.append(_lookup(lookup_conn, ref, m.group(0)))
        return f"{marker}{len(opaque) - 1}{marker}"

    expanded = _expand_dates(_REF.sub(first_pass, text), _at(now_ms).astimezone(zone))
    return re.sub(f"{marker}(\\d+){marker}", lambda m: opaque[int(m.group(1))], expanded)


def _run_value(run: Mapping[str, str] | None, m: re.Match[str]) -> str:
    if run is None:
        raise TaskError(f"{m.group(0)} has no value here: it stands for a run, and this is not a task")
    if m.group(1) not in run:
        known = ", ".join(f"${{run.{name}}}" for name in run)
        raise TaskError(f"unknown placeholder {m.group(0)}; known: {known}")
    return run[m.group(1)]


def _place_params(text: str, params: Mapping[str, Any], context: Context) -> dict[int, str]:
    """Start offset of each ``${params.x}`` in ``text`` -> the text placed there."""
    refs: list[ParamRef] = []
    for m in _REF.finditer(text):
        if m.group(1) != "params":
            continue
        name = m.group(2)
        if not _KEY.match(name):
            raise TaskError(f"invalid placeholder {m.group(0)}: use ${{params.<name>}}")
        if name not in params:
            raise TaskError(f"unknown param {name!r} in {m.group(0)}; known: {sorted(params) or 'none'}")
        refs.append((m.start(), m.end(), name))
    if not refs:
        return {}
    if context is not Context.SHELL:
        sizes: dict[str, int] = {}
        total = 0
        for _, _, name in refs:
            if name not in sizes:
                sizes[name] = param_bytes(params[name])
            total += sizes[name]
        if total > MAX_PLACED_BYTES:
            raise TaskError(
                f"the params placed in this text come to {total} bytes, more than {MAX_PLACED_BYTES}: "
                "pass large values through the KIOK_PARAM_<NAME> environment variables"
            )
    return {
        start: value for (start, _, _), value in zip(refs, place(text, refs, context, params), strict=True)
    }


def _conn_ref(kind: str, body: str) -> tuple[str, str] | None:
    if kind == "secret":
        return (body, "value") if _NAME.match(body) else None
    conn_id, dot, key = body.partition(".")
    return (conn_id, key) if dot and _NAME.match(conn_id) and _KEY.match(key) else None


def _lookup(lookup_conn: LookupConn | None, ref: tuple[str, str], token: str) -> str:
    if lookup_conn is None:
        raise TaskError(f"{token} refers to connection {ref[0]!r}, but no connections are available")
    try:
        return lookup_conn(*ref)
    except KeyError:
        raise TaskError(
            f"unknown connection or key in {token} (connection {ref[0]!r}, key {ref[1]!r})"
        ) from None


def _marker(text: str) -> str:
    """A private-use character absent from ``text``, bracketing opaque values during pass 2.

    Inside a date format the marker and index are plain literals, so even a secret used as
    a format argument comes out verbatim rather than interpreted."""
    for code in range(0xE000, 0xF900):
        if chr(code) not in text:
            return chr(code)
    raise TaskError("text uses every private-use character; cannot resolve placeholders")  # pragma: no cover


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def variable_bytes(name: str) -> int:
    """What a param's variable costs besides its value: ``KIOK_PARAM_<NAME>=``, the NUL
    after it and the pointer to it (the exec limit counts all three)."""
    return len("KIOK_PARAM_") + len(name) + 2 + 8


def param_bytes(value: Any) -> int:
    """The size of a param's value as its task gets it (``param_env``): a string's UTF-8,
    anything else's JSON, whose escapes (``\\u00e9``) can make it six times the text's."""
    return len(_text(value).encode("utf-8", "surrogatepass"))


def _expand_dates(text: str, now: datetime) -> str:
    """Replace each ``#{...}``; a ``}`` inside a quoted argument does not end the expression."""
    out: list[str] = []
    pos = 0
    while (start := text.find("#{", pos)) != -1:
        out.append(text[pos:start])
        end = date_function_end(text, start)
        if end >= len(text):
            raise TaskError(f"unterminated date placeholder {text[start : start + 40]!r}")
        out.append(_call(text[start + 2 : end], now))
        pos = end + 1
    out.append(text[pos:])
    return "".join(out)


# --- date functions (names, argument order and Java-style formats as in chango/kiok) -------------

_CALL = re.compile(r"^\s*([A-Za-z]+)\s*\((.*)\)\s*$", re.S)
#: An integer, or a string in single or double quotes where a doubled quote stands for itself.
_ARG = re.compile(r"""\s*(?:([-+]?\d+)|'((?:[^']|'')*)'|"((?:[^"]|"")*)")\s*(,|$)""")
_SHIFT = ("years", "months", "days", "hours", "minutes", "weeks")
#: name -> (sign of the shift or None, argument names); a trailing "format" is a string.
_FUNCS: dict[str, tuple[int | None, tuple[str, ...]]] = {
    "nowInMillis": (None, ()),
    "nowFormatted": (None, ("format",)),
    "nowPlusInMillis": (1, _SHIFT),
    "nowPlusFormatted": (1, (*_SHIFT, "format")),
    "nowMinusInMillis": (-1, _SHIFT),
    "nowMinusFormatted": (-1, (*_SHIFT, "format")),
}
#: English names, fixed: formatting must not depend on the worker's locale.
_MONTHS = ["January", "February", "March", "April", "May", "June"]
_MONTHS += ["July", "August", "September", "October", "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _call(expr: str, now: datetime) -> str:
    m = _CALL.match(expr)
    if not m:
        raise TaskError(f"invalid date placeholder #{{{expr}}}: expected #{{function(args)}}")
    name, raw = m.group(1), m.group(2)
    if name not in _FUNCS:
        raise TaskError(f"unknown date function {name!r} in #{{{expr}}}; known: {', '.join(_FUNCS)}")
    sign, names = _FUNCS[name]
    args = _parse_args(raw, expr)
    if len(args) != len(names):
        plural = "" if len(names) == 1 else "s"
        raise TaskError(f"{name} takes {len(names)} argument{plural} ({', '.join(names)}), got {len(args)}")
    for arg, arg_name in zip(args, names, strict=True):
        if isinstance(arg, str) != (arg_name == "format"):
            kind = "a quoted string" if arg_name == "format" else "an integer"
            raise TaskError(f"{name}: argument {arg_name} must be {kind}, got {arg!r}")
    at = now if sign is None else _shift(now, sign, [a for a in args if isinstance(a, int)])
    if names and names[-1] == "format":
        return _format(at, str(args[-1]))
    return str((at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1))


def _parse_args(raw: str, expr: str) -> list[int | str]:
    args: list[int | str] = []
    pos = 0
    while raw.strip() and pos < len(raw):
        m = _ARG.match(raw, pos)
        if not m or (m.group(4) == "," and m.end() == len(raw)):
            raise TaskError(f"cannot parse the arguments of #{{{expr}}}: use integers and quoted strings")
        num, single, double = m.group(1), m.group(2), m.group(3)
        if num is not None:
            args.append(int(num))
        else:
            args.append(single.replace("''", "'") if single is not None else double.replace('""', '"'))
        pos = m.end()
    return args


def _shift(now: datetime, sign: int, amounts: list[int]) -> datetime:
    """Calendar units on the local date (Jan 31 + 1 month = Feb 28/29, a day stays a day across
    DST, as Java's ZonedDateTime.plusDays); hours and minutes on the instant."""
    years, months, days, hours, minutes, weeks = (sign * a for a in amounts)
    try:
        local = _add_months(_add_months(now, 12 * years), months) + timedelta(days=days + 7 * weeks)
        instant = local.astimezone(UTC) + timedelta(hours=hours, minutes=minutes)
    except (OverflowError, ValueError) as e:
        raise TaskError(f"date out of range: {e}") from None
    return instant.astimezone(now.tzinfo or UTC)


def _add_months(dt: datetime, n: int) -> datetime:
    year, month0 = divmod(dt.year * 12 + dt.month - 1 + n, 12)
    day = min(dt.day, calendar.monthrange(year, month0 + 1)[1])
    return dt.replace(year=year, month=month0 + 1, day=day)


def _format(dt: datetime, pattern: str) -> str:
    """A subset of Java's DateTimeFormatter: letters repeat for width, 'text' is literal,
    '' is a quote, Y is treated as y (as kiok does), other non-letters are copied."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("''", i):
            out.append("'")
            i += 2
        elif c == "'":
            j = i + 1
            while j < len(pattern) and (pattern[j] != "'" or pattern.startswith("''", j)):
                out.append(pattern[j])
                j += 2 if pattern.startswith("''", j) else 1
            if j >= len(pattern):
                raise TaskError(f"unterminated quote in date format {pattern!r}")
            i = j + 1
        elif c.isascii() and c.isalpha():
            j = i
            while j < len(pattern) and pattern[j] == c:
                j += 1
            out.append(_field(dt, "y" if c == "Y" else c, j - i, pattern))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _field(dt: datetime, letter: str, n: int, pattern: str) -> str:
    def num(v: int) -> str:
        return str(v).zfill(n)

    if letter in "yu":
        return f"{dt.year % 100:02d}" if n == 2 else num(dt.year)
    if letter == "M":
        return num(dt.month) if n <= 2 else _MONTHS[dt.month - 1][: 3 if n == 3 else None if n == 4 else 1]
    if letter == "E":
        return _DAYS[dt.weekday()][: 3 if n <= 3 else None if n == 4 else 1]
    simple = {"d": dt.day, "D": dt.timetuple().tm_yday, "H": dt.hour, "h": (dt.hour - 1) % 12 + 1}
    simple |= {"K": dt.hour % 12, "k": dt.hour or 24, "m": dt.minute, "s": dt.second}
    if letter in simple:
        return num(simple[letter])
    if letter == "S":
        return f"{dt.microsecond:06d}000"[:n].ljust(n, "0")
    if letter == "a":
        return "AM" if dt.hour < 12 else "PM"
    if letter in "ZX":
        off = int((dt.utcoffset() or timedelta()).total_seconds()) // 60
        if letter == "X" and off == 0:
            return "Z"
        sign, (hh, mm) = "-" if off < 0 else "+", divmod(abs(off), 60)
        if letter == "X" and n == 1 and mm == 0:
            return f"{sign}{hh:02d}"
        return f"{sign}{hh:02d}{':' if letter == 'X' and n >= 3 else ''}{mm:02d}"
    if letter == "V" and n == 2:
        return str(dt.tzinfo)
    raise TaskError(f"unsupported letter {letter * n!r} in date format {pattern!r}")
