"""Reading DAG documents (YAML, JSON, or an already-parsed mapping) into a validated DagSpec.

This module owns the document *shape*: which keys exist, their types and aliases
(``timeoutMs`` for ``timeout``), and pointing at the line of a syntax error. What the values
mean (graph, cron, task types) is checked by ``kiok.dag.validate``, which every path ends in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import gc
import hashlib
import json
import reprlib
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

import msgpack
import yaml

from kiok.core.document_limits import (
    INT_PROBLEM,
    DuplicateKey,
    located_problem,
    parse_json_int,
    unique_object,
)
from kiok.dag import yaml_doc
from kiok.dag.durations import parse_duration_ms
from kiok.dag.locate import line_in
from kiok.dag.notify import parse_notify
from kiok.dag.params import MAX_PARAMS, ParamRule, check_default_sizes, check_names, is_missing, parse_param
from kiok.dag.spec import (
    DEFAULT_MAX_ACTIVE_RUNS,
    DEFAULT_RETRY_DELAY_MS,
    DagSpec,
    TaskSpec,
    TaskType,
    TriggerRule,
)
from kiok.dag.validate import (
    check_id,
    check_param_value,
    normalize_labels,
    parse_task_type,
    parse_trigger_rule,
    validate,
    validate_dag_fields,
)
from kiok.errors import DagValidationError, PayloadTooLarge
from kiok.ids import DagId, TaskId

_TOP_KEYS = frozenset({"dag", "tasks"})
_DAG_KEYS = frozenset(
    {"id", "name", "description", "schedule", "timezone", "catchup", "max_active_runs", "default_timeout"}
    | {"defaultTimeoutMs", "labels", "params", "allow_extra_args", "retention", "retentionMs"}
    | {"notify", "sla", "slaMs"}
    | {"run_timeout", "runTimeoutMs"}
    | {"python"}
)
_TASK_KEYS = frozenset(
    {"id", "type", "script", "requires", "trigger_rule", "retries", "retry_delay", "retryDelayMs"}
    | {"retry_exponential_backoff", "max_retry_delay", "maxRetryDelayMs", "timeout", "timeoutMs", "config"}
    | {"python"}
)
#: Bounds on a parsed document. YAML aliases share objects, so a few hundred bytes can stand
#: for billions of nodes (or a cycle); everything after parsing walks the tree, so refuse early.
_MAX_NODES = 200_000
_MAX_DEPTH = 64
#: The largest DAG source accepted (below the 10 MiB HTTP body limit): a 30,000-task DAG is
#: 1.5 MB, and every registered version is kept, replicated, in the log.
MAX_SOURCE_BYTES = 4 * 1024 * 1024
#: An error message longer than this (a cycle through thousands of tasks, a huge unknown
#: key) is cut, saying how much was left out: the editor shows it, nobody reads 500 KB.
MAX_MESSAGE_CHARS = 2_000
#: http fields that may sit on the task itself; they are folded into ``config`` where kiok keeps them.
_HTTP_TASK_KEYS = frozenset({"url", "method", "body", "headers"})


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Compiling a large document allocates hundreds of thousands of objects and frees
    none of them until it is done: the cyclic collector would run over and over meanwhile,
    finding nothing (a third of registering a 10,000-task DAG). Reference counting still
    frees; the collector runs again afterwards."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def spec_from_yaml(text: str) -> DagSpec:
    """Parse YAML (safe subset only); syntax errors name the 1-based line and column."""
    with _collector_paused():
        return _spec_from_yaml(text)


def _spec_from_yaml(text: str) -> DagSpec:
    try:
        doc, root = yaml_doc.load_with_root(text, max_values=_MAX_NODES, max_depth=_MAX_DEPTH)
    except yaml_doc.LimitExceeded as e:
        raise DagValidationError(str(e)) from None
    except yaml.MarkedYAMLError as e:
        if "maximum nesting depth" in str(e.problem):  # libyaml's own depth limit
            raise DagValidationError(
                f"invalid YAML: nested too deeply (at most {_MAX_DEPTH} levels)"
            ) from None
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        line = mark.line + 1 if mark else None
        raise DagValidationError(f"invalid YAML{where}: {e.problem or e.context}", line=line) from None
    except yaml.YAMLError as e:
        raise DagValidationError(f"invalid YAML: {e}") from None
    except RecursionError:
        raise DagValidationError(f"invalid YAML: nested too deeply (at most {_MAX_DEPTH} levels)") from None
    except (ValueError, OverflowError) as e:
        # A scalar the constructors cannot build: a date such as 2023-02-30, or an integer of
        # thousands of digits (past Python's int conversion limit).
        raise DagValidationError(f"invalid YAML: {_unbuildable(e)}") from None
    except (IndexError, KeyError, AttributeError, TypeError):
        # PyYAML's constructors fail so on a value its explicit tag cannot hold: !!int "",
        # !!float "-", !!bool foo, !!timestamp foo.
        raise DagValidationError('invalid YAML: a value its tag cannot build (e.g. !!int "")') from None
    try:
        return spec_from_document(doc, registering=True)
    except DagValidationError as e:
        if e.line is None:  # from the marks the parse kept: no second parse per error
            e.line = line_in(root, e.field)
        raise


def spec_from_json(text: str) -> DagSpec:
    with _collector_paused():
        return _spec_from_json(text)


def _spec_from_json(text: str) -> DagSpec:
    try:
        doc = json.loads(text, parse_int=parse_json_int, object_pairs_hook=unique_object)
    except json.JSONDecodeError as e:
        raise DagValidationError(
            f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}", line=e.lineno
        ) from None
    except DuplicateKey as e:
        raise DagValidationError(f"invalid JSON: found duplicate key {e.key!r}") from None
    except RecursionError:
        raise DagValidationError(f"invalid JSON: nested too deeply (at most {_MAX_DEPTH} levels)") from None
    return spec_from_document(doc, registering=True)


def _unbuildable(e: Exception) -> str:
    """What a parser's ValueError says, without Python's advice to raise the int limit."""
    return INT_PROBLEM if "integer string conversion" in str(e) else str(e)


def spec_from_body(body: bytes, content_type: str | None) -> DagSpec:
    """An HTTP request body: YAML or JSON by content type, else JSON if it starts like JSON.
    ``PayloadTooLarge`` past ``MAX_SOURCE_BYTES``; a ``DagValidationError`` message and field
    are cut to ``MAX_MESSAGE_CHARS``."""
    if len(body) > MAX_SOURCE_BYTES:
        raise PayloadTooLarge(
            f"DAG document too large: {len(body)} bytes, "
            f"at most {MAX_SOURCE_BYTES} ({MAX_SOURCE_BYTES >> 20} MiB)"
        )
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DagValidationError(f"DAG document is not UTF-8 (byte {e.start})") from None
    kind = (content_type or "").lower()
    try:
        if "yaml" in kind or "yml" in kind:
            return spec_from_yaml(text)
        if "json" in kind or text.lstrip().startswith(("{", "[")):
            return spec_from_json(text)
        return spec_from_yaml(text)
    except DagValidationError as e:
        if len(e.detail) <= MAX_MESSAGE_CHARS and len(e.field or "") <= MAX_MESSAGE_CHARS // 4:
            raise
        field = None if e.field is None else _cut(e.field, MAX_MESSAGE_CHARS // 4)
        raise DagValidationError(_cut(e.detail, MAX_MESSAGE_CHARS), field=field, line=e.line) from None


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[: limit - 60]}... ({len(text) - limit + 60} more characters)"


_COMPILED_MAX = 64
_compiled: OrderedDict[bytes, DagSpec] = OrderedDict()
_compiled_lock = threading.Lock()


def compiled_spec(doc: object) -> DagSpec:
    """``spec_from_document`` for documents seen again and again (every run of a DAG carries
    its spec): specs are immutable, so one compiled per distinct document is shared. Hashing
    the packed document costs a few percent of compiling a large one."""
    try:
        packed = msgpack.packb(doc, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return spec_from_document(doc)  # not a plain document: let validation say why
    key = hashlib.blake2b(packed, digest_size=20).digest()
    with _compiled_lock:
        spec = _compiled.get(key)
        if spec is not None:
            _compiled.move_to_end(key)
            return spec
    with _collector_paused():
        spec = spec_from_document(doc)
    with _compiled_lock:
        _compiled[key] = spec
        while len(_compiled) > _COMPILED_MAX:
            _compiled.popitem(last=False)
    return spec


def spec_from_document(doc: object, *, registering: bool = False) -> DagSpec:
    """The validated spec for a parsed document ``{"dag": {...}, "tasks": [...]}`` (DESIGN §4)."""
    if not isinstance(doc, Mapping):
        raise DagValidationError(f"a DAG document is a mapping with 'dag' and 'tasks', got {_kind(doc)}")
    _check_size(doc)
    top = _Fields(doc, "", _TOP_KEYS)
    dag = _Fields(top.mapping("dag", required=True), "dag", _DAG_KEYS)
    tasks = top.get("tasks")
    if tasks is None:
        tasks = []
    if not isinstance(tasks, list):
        raise DagValidationError(f"expected a list of tasks, got {_kind(tasks)}", field="tasks")
    dag_id = check_id(dag.get("id"), "dag.id")
    labels = dag.get("labels") or []
    if not isinstance(labels, list):
        raise DagValidationError(f"expected a list of strings, got {_kind(labels)}", field="dag.labels")
    defaults, rules = _params(dag.mapping("params"), registering)
    schedule = dag.text("schedule")
    spec = DagSpec(
        id=DagId(dag_id),
        name=dag.text("name") or "",
        description=dag.text("description") or "",
        schedule=_schedule(schedule),
        timezone=dag.text("timezone") or "UTC",
        catchup=dag.flag("catchup", False),
        max_active_runs=dag.integer("max_active_runs", DEFAULT_MAX_ACTIVE_RUNS),
        default_timeout_ms=dag.duration("default_timeout", "defaultTimeoutMs"),
        run_timeout_ms=dag.duration("run_timeout", "runTimeoutMs"),
        retention_ms=dag.duration("retention", "retentionMs"),
        labels=normalize_labels(labels, "dag.labels"),
        params=defaults,
        param_rules=rules,
        allow_extra_args=dag.flag("allow_extra_args", False),
        sla_ms=dag.duration("sla", "slaMs"),
        notify=parse_notify(dag.get("notify")),
        python=dag.text("python"),
        tasks=(),
    )
    # The DAG's own fields are checked before its tasks are read: problems are reported in
    # document order.
    validate_dag_fields(spec, registering=registering)
    spec = dataclasses.replace(spec, tasks=tuple(_task(t, f"tasks[{i}]") for i, t in enumerate(tasks)))
    return validate(spec, registering=registering)


#: cron macros, as Airflow, Dkron and Vixie cron accept them, stored as the 5-field form.
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _schedule(text: str | None) -> str | None:
    """The 5-field cron for ``dag.schedule``; ``@daily``-style macros are expanded, and
    other ``@`` forms refused by name (``@every 1h`` and ``@reboot`` have no cron form)."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    if text.startswith("@"):
        if text.lower() not in _MACROS:
            raise DagValidationError(
                f"unsupported schedule {text!r}; use 5-field cron or one of {', '.join(_MACROS)}",
                field="dag.schedule",
            )
        return _MACROS[text.lower()]
    return text


def _params(raw: Mapping[str, Any], registering: bool) -> tuple[dict[str, Any], dict[str, ParamRule]]:
    """Defaults and constraints of ``dag.params`` (``kiok.dag.params``)."""
    if registering and len(raw) > MAX_PARAMS:  # a stored spec's were taken when registered
        raise DagValidationError(f"at most {MAX_PARAMS} params, got {len(raw)}", field="dag.params")
    check_names(list(raw), "dag.params")
    defaults: dict[str, Any] = {}
    rules: dict[str, ParamRule] = {}
    for name, value in raw.items():
        field = f"dag.params.{name}"
        default, rule = parse_param(name, check_param_value(value, field), field, registering=registering)
        if not is_missing(default):
            defaults[name] = default
        if rule is not None:
            rules[name] = rule
    if registering:  # a stored spec's defaults were taken when it was registered
        check_default_sizes(defaults)
    return defaults, rules


def _task(raw: object, at: str) -> TaskSpec:
    if not isinstance(raw, Mapping):
        raise DagValidationError(f"a task is a mapping with at least 'id', got {_kind(raw)}", field=at)
    kind = TaskType.SHELL if raw.get("type") is None else parse_task_type(raw["type"], f"{at}.type")
    f = _Fields(raw, at, (_TASK_KEYS | _HTTP_TASK_KEYS) if kind is TaskType.HTTP else _TASK_KEYS)
    requires = f.get("requires") or []
    if not isinstance(requires, list):
        raise DagValidationError(
            f"expected a list of task ids, got {_kind(requires)}", field=f"{at}.requires"
        )
    config = {k: _config_value(v, f"{at}.config.{k}") for k, v in f.mapping("config").items()}
    for key in sorted(_HTTP_TASK_KEYS & raw.keys()):
        if key in config:
            raise DagValidationError(f"given both as {key} and config.{key}", field=f"{at}.{key}")
        config[key] = _config_value(raw[key], f"{at}.{key}")
    rule = f.get("trigger_rule")
    delay = f.duration("retry_delay", "retryDelayMs")
    return TaskSpec(
        id=TaskId(check_id(f.get("id"), f"{at}.id")),
        type=kind,
        script=f.text("script"),
        # dict.fromkeys: drop a repeated upstream but keep the author's order
        requires=tuple(
            dict.fromkeys(TaskId(check_id(r, f"{at}.requires[{i}]")) for i, r in enumerate(requires))
        ),
        trigger_rule=TriggerRule.ALL_SUCCESS
        if rule is None
        else parse_trigger_rule(rule, f"{at}.trigger_rule"),
        retries=f.integer("retries", 0),
        retry_delay_ms=DEFAULT_RETRY_DELAY_MS if delay is None else delay,
        retry_exponential_backoff=f.flag("retry_exponential_backoff", True),
        max_retry_delay_ms=f.duration("max_retry_delay", "maxRetryDelayMs"),
        timeout_ms=f.duration("timeout", "timeoutMs"),
        config=config,
        python=f.text("python"),
    )


def _check_size(doc: object) -> None:
    """The limits on values, over the whole document before its fields are read (numbers out
    of range, NaN, text that is not UTF-8, depth, size): the first refused value in document
    order, with its path (and so its line)."""
    found = located_problem(doc, max_depth=_MAX_DEPTH, max_values=_MAX_NODES)
    if found is not None:
        path, problem = found
        raise DagValidationError(problem, field=path or None)


def _config_value(value: object, field: str) -> str:
    """config is a flat string map (as in kiok): strings stay, anything else is JSON-encoded."""
    if isinstance(value, str):
        return value
    plain = check_param_value(value, field)
    return plain if isinstance(plain, str) else json.dumps(plain)


#: Shows a value in an error without walking all of it: a document's values may share one
#: object many times over (YAML aliases: a few hundred bytes can stand for billions of items).
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 60, 60


def _kind(value: object) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {_SHORT.repr(value)}"[:80]


class _Fields:
    """Typed access to one mapping of the document; a missing or null key means the default."""

    def __init__(self, data: Mapping[Any, Any], at: str, allowed: frozenset[str]) -> None:
        for key in data:
            if key not in allowed:
                names = sorted(allowed)
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(names)}"
                raise DagValidationError(f"unknown key {key!r}; {hint}", field=self._path(at, key))
        self.data = data
        self.at = at

    @staticmethod
    def _path(at: str, key: object) -> str:
        return f"{at}.{key}" if at else str(key)

    def get(self, key: str) -> object:
        return self.data.get(key)

    def text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise DagValidationError(f"expected a string, got {_kind(value)}", field=self._path(self.at, key))
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise DagValidationError(
                f"expected true or false, got {_kind(value)}", field=self._path(self.at, key)
            )
        return value

    def integer(self, key: str, default: int) -> int:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise DagValidationError(
                f"expected an integer, got {_kind(value)}", field=self._path(self.at, key)
            )
        return value

    def mapping(self, key: str, *, required: bool = False) -> Mapping[Any, Any]:
        value = self.data.get(key)
        if value is None and not required:
            return {}
        if not isinstance(value, Mapping):
            raise DagValidationError(
                f"expected a mapping, got {_kind(value)}", field=self._path(self.at, key)
            )
        for k in value:
            if not isinstance(k, str):
                raise DagValidationError(f"keys must be strings, got {k!r}", field=self._path(self.at, key))
        return value

    def duration(self, key: str, ms_key: str) -> int | None:
        """One duration given either as ``key`` ('30m') or as the kiok-style ``ms_key`` (int ms)."""
        if self.data.get(key) is not None and self.data.get(ms_key) is not None:
            raise DagValidationError(
                f"give either {key} or {ms_key}, not both", field=self._path(self.at, key)
            )
        for k in (key, ms_key):
            if self.data.get(k) is not None:
                return parse_duration_ms(self.data[k], self._path(self.at, k))
        return None
