r"""DAG params: what a DAG author declares, and checking the trigger args a user sends.

Trigger args come from users who may run a DAG but not change it, so they are checked
against the author's declarations before a run exists: an unknown name (unless the DAG sets
``allow_extra_args``), a value of the wrong type, outside an ``enum``, not matching a
``pattern`` or too long is refused with an error naming the param. Whatever passes is still
only ever *data* for the task (``kiok.core.placement``), never text spliced into code.

A ``pattern`` is RE2 syntax, compiled and matched with RE2 (``google-re2``): matching takes
time linear in the value, whatever the pattern, so no author's ``(a+)+b`` can stall the
master on a trigger. What RE2 cannot do in linear time (backreferences, lookaround) is
refused at registration (``parse_param(..., registering=True)``), naming the param.

A *stored* spec (one registered before patterns were RE2, compiled again for every run,
backfill and worker) is never refused for its pattern: one RE2 cannot compile (``\Z``,
``\u00e9``, ``(?x)``, a lookahead, ``a{1001}``) is a *legacy* pattern, matched with Python's
``re`` as when it was registered, so runs of that DAG go on and every master, old or new,
decides alike. Registering the DAG again requires RE2 syntax.

A param is declared in ``dag.params`` either as a plain value (its default) or as a mapping
of constraint keywords: ``{default, type, enum, pattern, minLength, maxLength, minimum,
maximum, description}``. A mapping none of whose keys is a keyword is a plain object
default; one mixing keywords and other keys is refused (a misspelt ``maxlenght`` must not
silently turn a constraint into a default).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import re2  # type: ignore[import-untyped]

from kiok.core.document_limits import document_problem
from kiok.core.placeholders import MAX_PARAM_BYTES, MAX_PARAMS_BYTES, param_bytes, past_bounds, variable_bytes
from kiok.errors import DagValidationError, InvalidInput

#: Param names become ``KIOK_PARAM_<NAME>`` environment variables: letters, digits and ``_``.
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}\Z")
#: Every argument travels to the task in an environment variable; Linux caps one variable
#: (with its name) at 128 KiB, so values are capped well below, and all args together too.
MAX_VALUE_BYTES = MAX_PARAM_BYTES
MAX_ARGS_BYTES = MAX_PARAMS_BYTES
MAX_ARGS = 100
#: Params a new DAG declares, as many as a trigger may give args: with 16,000 of them a DAG's
#: defaults' names alone came near Linux's 2 MiB for a process's environment.
MAX_PARAMS = 100
TYPES = ("string", "integer", "number", "boolean", "array", "object")
_KEYWORDS = frozenset(
    {"default", "type", "enum", "pattern", "minLength", "maxLength", "minimum", "maximum", "description"}
)
_MISSING: Any = object()
#: A number as text (ASCII digits only); it may still overflow a float (``1e999``).
_NUMBER = re.compile(r"[-+]?([0-9]{1,18}(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]{1,3})?")


def env_name(name: str) -> str:
    """The environment variable that carries param ``name`` to a task."""
    return "KIOK_PARAM_" + name.upper()


@dataclass(frozen=True)
class ParamRule:
    """The constraints on one param; ``has_default`` False means the trigger must give it."""

    name: str
    has_default: bool = False
    default: Any = None
    type: str | None = None
    enum: tuple[Any, ...] | None = None
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.has_default:
            d["default"] = self.default
        for key, value in (
            ("type", self.type),
            ("enum", None if self.enum is None else list(self.enum)),
            ("pattern", self.pattern),
            ("minLength", self.min_length),
            ("maxLength", self.max_length),
            ("minimum", self.minimum),
            ("maximum", self.maximum),
        ):
            if value is not None:
                d[key] = value
        if self.description or not d:  # an empty mapping would read as a plain {} default
            d["description"] = self.description
        return d

    def check(self, value: Any, field: str, *, stored: bool = False) -> Any:
        """``value`` as the task gets it (a string given for a number param is converted, as
        ``--arg n=3`` sends one); ``InvalidInput`` naming ``field`` when it breaks a rule.
        ``stored``: an arg in a command already logged (``apply()``), checked as the kiok
        that logged it did (see ``check_args``)."""
        value = _coerce(value, self.type, stored)
        if self.type is not None and not _is_type(value, self.type):
            raise InvalidInput(f"{field}: expected {_a(self.type)}, got {_show(value)}")
        if self.enum is not None and not any(_same(value, e) for e in self.enum):
            raise InvalidInput(f"{field}: {_show(value)} is not one of {_clip(repr(list(self.enum)))}")
        if isinstance(value, str):
            if self.min_length is not None and len(value) < self.min_length:
                raise InvalidInput(f"{field}: shorter than minLength {self.min_length}")
            if self.max_length is not None and len(value) > self.max_length:
                raise InvalidInput(f"{field}: longer than maxLength {self.max_length}")
            if self.pattern is not None and _matcher(self.pattern).fullmatch(value) is None:
                raise InvalidInput(
                    f"{field}: {_show(value)} does not match pattern {_clip(repr(self.pattern))}"
                )
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                raise InvalidInput(f"{field}: {value} is below minimum {self.minimum}")
            if self.maximum is not None and value > self.maximum:
                raise InvalidInput(f"{field}: {value} is above maximum {self.maximum}")
        return value

    @property
    def legacy_pattern(self) -> bool:
        """True when ``pattern`` is one RE2 cannot compile, kept from a stored spec and
        matched with Python's ``re`` (see the module docstring)."""
        return self.pattern is not None and _legacy(self.pattern)


def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # the refusal says why; RE2 need not also write it to stderr
    return options


_RE2_OPTIONS = _re2_options()


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> Any:
    """``pattern`` compiled with RE2 (linear-time matching); ``ValueError`` saying why it
    cannot be (a syntax error, a backreference or lookaround, which RE2 does not have, or
    too large a program). Cached: every trigger checks its args against the same few."""
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as e:
        reason = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ValueError(
            f"invalid regular expression: {reason} (patterns are RE2 syntax, matched in linear "
            "time: no backreferences, no lookahead or lookbehind)"
        ) from None


@functools.lru_cache(maxsize=512)
def _legacy(pattern: str) -> bool:
    try:
        compile_pattern(pattern)
    except ValueError:
        return True
    return False


@functools.lru_cache(maxsize=512)
def _matcher(pattern: str) -> Any:
    """What matches values against ``pattern``: RE2 when it compiles the pattern, else
    Python's ``re`` (a legacy pattern of a stored spec); ``ValueError`` with RE2's reason
    when neither does."""
    if not _legacy(pattern):
        return compile_pattern(pattern)
    try:
        return re.compile(pattern)
    except (re.error, OverflowError, RecursionError):
        compile_pattern(pattern)  # raises, saying why RE2 refuses it
        raise  # pragma: no cover  (compile_pattern just refused it)


def parse_param(
    name: str, raw: object, field: str, *, registering: bool = False
) -> tuple[Any, ParamRule | None]:
    """(default or ``_MISSING``, rule or None) for one ``dag.params`` entry. ``registering``:
    a new source (API, CLI), where a ``pattern`` must be RE2; False (a stored spec compiled
    again) also accepts a legacy pattern Python's ``re`` compiles, and a number default past
    a float's range (``'1e999'``), both taken before they were refused."""
    if not isinstance(raw, Mapping) or not (_KEYWORDS & raw.keys()):
        return raw, None
    unknown = sorted(str(k) for k in raw if k not in _KEYWORDS)
    if unknown:
        raise DagValidationError(
            f"unknown constraint {unknown[0]!r}; allowed: {', '.join(sorted(_KEYWORDS))} "
            "(for an object default that uses these names, write {default: {...}})",
            field=field,
        )
    kind = raw.get("type")
    if kind is not None and kind not in TYPES:
        raise DagValidationError(f"unknown type {kind!r}; allowed: {', '.join(TYPES)}", field=f"{field}.type")
    enum = raw.get("enum")
    if enum is not None and (not isinstance(enum, list) or not enum):
        raise DagValidationError("enum must be a non-empty list", field=f"{field}.enum")
    pattern = raw.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str):
            raise DagValidationError("pattern must be a string", field=f"{field}.pattern")
        try:
            if registering:
                compile_pattern(pattern)
            else:
                _matcher(pattern)
        except ValueError as e:
            raise DagValidationError(str(e), field=f"{field}.pattern") from None
    bounds: dict[str, Any] = {}
    for key in ("minLength", "maxLength"):
        v = raw.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise DagValidationError("must be an integer >= 0", field=f"{field}.{key}")
        bounds[key] = v
    for key in ("minimum", "maximum"):
        v = raw.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise DagValidationError("must be a number", field=f"{field}.{key}")
        bounds[key] = v
    description = raw.get("description") or ""
    if not isinstance(description, str):
        raise DagValidationError("must be a string", field=f"{field}.description")
    rule = ParamRule(
        name=name,
        has_default="default" in raw,
        default=raw.get("default"),
        type=kind,
        enum=None if enum is None else tuple(enum),
        pattern=pattern,
        min_length=bounds["minLength"],
        max_length=bounds["maxLength"],
        minimum=bounds["minimum"],
        maximum=bounds["maximum"],
        description=description,
    )
    if rule == ParamRule(name=name, has_default=True, default=rule.default):
        return rule.default, None  # {default: x} alone is the plain default x
    # A stored spec's default that overflows a float was taken when it was registered (the
    # task gets the text, as defaults are not converted): its runs go on.
    if rule.has_default and (registering or not _overflows(rule.default, kind)):
        try:
            rule.check(rule.default, f"{field}.default")
        except InvalidInput as e:
            raise DagValidationError(e.message) from None
    return (rule.default if rule.has_default else _MISSING), rule


def plain_default_document(value: Any) -> Any:
    """How a plain default is written back: wrapped in ``{default: ...}`` when it is a
    mapping that would otherwise read as constraints."""
    if isinstance(value, Mapping) and _KEYWORDS & value.keys():
        return {"default": value}
    return value


def is_missing(value: object) -> bool:
    return value is _MISSING


def check_names(names: list[str], field: str) -> None:
    """Param names must make distinct environment variables."""
    seen: dict[str, str] = {}
    for name in names:
        if not NAME_PATTERN.match(name):
            raise DagValidationError(
                f"invalid param name {name!r}: use letters, digits and _ (not starting with a digit), "
                "as it becomes the environment variable KIOK_PARAM_<NAME>",
                field=f"{field}.{name}",
            )
        env = env_name(name)
        if env in seen:
            raise DagValidationError(
                f"params {seen[env]!r} and {name!r} would both be {env}", field=f"{field}.{name}"
            )
        seen[env] = name


def check_args(
    defaults: Mapping[str, Any],
    rules: Mapping[str, ParamRule],
    allow_extra: bool,
    args: object,
    *,
    stored: bool = False,
) -> dict[str, Any]:
    """The args a run gets, checked against the DAG's params; ``InvalidInput`` naming the
    offending param otherwise. Defaults are not copied in: the driver merges them.

    ``stored``: args of a command already in the log (``apply()``), which every replica must
    decide as the kiok that proposed it did, whatever its version: what was refused only
    later (a number past a float's range, now refused before proposing) is taken as then."""
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise InvalidInput("args must be a JSON object of param name to value")
    if len(args) > MAX_ARGS:
        raise InvalidInput(f"args: at most {MAX_ARGS} args")
    out: dict[str, Any] = {}
    total = 0
    for name, value in args.items():
        field = f"args.{name}"
        if not isinstance(name, str):
            raise InvalidInput(f"args: names must be strings, got {name!r}")
        known = name in defaults or name in rules
        if not known:
            if not allow_extra:
                raise InvalidInput(
                    f"{field}: unknown param; this DAG declares {_declared(defaults, rules)} "
                    "(set dag.allow_extra_args to accept others)"
                )
            if not NAME_PATTERN.match(name):
                raise InvalidInput(f"{field}: invalid param name; use letters, digits and _")
        total += _check_plain(value, field, stored=stored) + (16 if stored else variable_bytes(name))
        if total > MAX_ARGS_BYTES:
            raise InvalidInput(f"args: larger than {MAX_ARGS_BYTES} bytes in all")
        rule = rules.get(name)
        out[name] = rule.check(value, field, stored=stored) if rule is not None else value
    # Each variable names one value: the one the task sees placed in its script too.
    envs = {env_name(n): n for n in (*defaults, *rules)}
    for name in out:
        if name in defaults or name in rules:
            continue
        other = envs.setdefault(env_name(name), name)
        # Two extra args on one variable were taken before this check existed: as then.
        if other != name and not (stored and other not in defaults and other not in rules):
            whose = "a declared param" if other in defaults or other in rules else f"args.{other}"
            raise InvalidInput(f"args.{name}: would be the same variable ({env_name(name)}) as {whose}")
    for name, rule in rules.items():
        if not rule.has_default and name not in out:
            raise InvalidInput(f"args.{name}: required (the DAG gives it no default)")
    return out


def _check_plain(value: object, field: str, *, stored: bool = False) -> int:
    """Size in bytes of a JSON value as its task gets it (``param_bytes``: a list of 150,000
    zeros is 450 KB there, where its strings are none); refuses what the store cannot hold
    (``kiok.core.document_limits``), NUL characters and oversize values. ``stored``: as
    before non-strings were counted (``check_args``), their strings only."""
    name = field.removeprefix("args.")
    problem = document_problem({name: value}, max_depth=32)
    if problem is not None:
        raise InvalidInput(f"args.{problem}")
    strings = 0
    for text in _strings(value):
        if "\x00" in text:
            raise InvalidInput(f"{field}: contains a NUL character")
        length = len(text.encode("utf-8", "surrogatepass"))
        if length > MAX_VALUE_BYTES:
            raise InvalidInput(f"{field}: longer than {MAX_VALUE_BYTES} bytes")
        strings += length
    if stored:
        return strings
    size = param_bytes(value)
    if size > MAX_VALUE_BYTES:
        raise InvalidInput(
            f"{field}: {size} bytes as the task gets it (JSON, for what is not a string), "
            f"more than {MAX_VALUE_BYTES}"
        )
    return size


def _declared(defaults: Mapping[str, Any], rules: Mapping[str, ParamRule]) -> str:
    """A DAG's param names for an error, at most 20 of them (a stored DAG may have many)."""
    names = sorted({*defaults, *rules})
    if not names:
        return "none"
    shown = ", ".join(repr(n) for n in names[:20])
    return f"[{shown}]" if len(names) <= 20 else f"[{shown}, and {len(names) - 20} more]"


def check_default_sizes(defaults: Mapping[str, Any]) -> None:
    """A new DAG's param defaults within what a trigger's args may be (``check_args``): each
    travels to every task in an environment variable too, and one past Linux's limit left
    every task of the DAG failing to start ("Argument list too long"). With the args (as
    many, as large) and kiok's own variables, a task's environment stays well under the
    2 MiB a process may be given."""
    over = past_bounds(defaults)
    if over is None:
        return
    name, size = over
    if name is not None:
        raise DagValidationError(
            f"default is {size} bytes as the task gets it (JSON, for what is not a string), "
            f"more than {MAX_VALUE_BYTES}",
            field=f"dag.params.{name}",
        )
    raise DagValidationError(f"defaults larger than {MAX_ARGS_BYTES} bytes in all", field="dag.params")


def _strings(value: object) -> Iterator[str]:
    """Every string in a JSON value (keys too); its depth is already bounded."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _coerce(value: Any, kind: str | None, stored: bool = False) -> Any:
    """``value`` as ``kind`` when it is a string that reads as one (``--arg n=3``), else
    ``value`` unchanged, for the type check to refuse. ``stored``: as before non-finite
    numbers were refused (``check_args``)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    # ASCII digits only: int() and float() also read '١٢' (Arabic-Indic digits) as 12
    if kind == "integer" and re.fullmatch(r"[-+]?[0-9]{1,18}", text):
        return int(text)
    if kind == "number" and _NUMBER.fullmatch(text):
        number = float(text)
        if not math.isfinite(number) and not stored:
            # '1e999' overflows to infinity, which JSON cannot hold (the run's view would
            # not parse) and which passes every maximum: no number. '1e-999' is 0.0, finite.
            return value
        return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
    if kind == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return value


def _overflows(value: Any, kind: str | None) -> bool:
    """Whether ``value`` is number text past a float's range, as ``'1e999'`` for a number."""
    number = _coerce(value, kind, stored=True) if isinstance(value, str) else None
    return isinstance(number, float) and not math.isfinite(number)


def _is_type(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list | tuple)
    return isinstance(value, Mapping)


def _same(a: Any, b: Any) -> bool:
    return (type(a) is type(b) and a == b) or (
        isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool) and a == b
    )


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _clip(text: str, most: int = 300) -> str:
    """An author's ``enum`` or ``pattern`` as an error shows it: at most ``most`` characters
    (one of 70,000 choices made each refused trigger a 4 MB answer)."""
    return text if len(text) <= most else f"{text[: most - 3]}... ({len(text)} characters)"


def _show(value: Any) -> str:
    """A value as an error shows it: a string quoted, anything else as the JSON it came as
    (``true``, ``null``, ``{"b": [1]}``, not Python's ``True``)."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = [
    "MAX_ARGS_BYTES",
    "MAX_PARAMS",
    "MAX_VALUE_BYTES",
    "NAME_PATTERN",
    "ParamRule",
    "check_args",
    "check_default_sizes",
    "check_names",
    "compile_pattern",
    "env_name",
    "is_missing",
    "parse_param",
    "plain_default_document",
]
