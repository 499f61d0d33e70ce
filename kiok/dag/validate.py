"""The semantic checks every DagSpec passes before kiok accepts it, whatever it was written in.

Loaders (YAML, JSON, SDK) check shapes and types; this module checks meaning: ids, the
graph (duplicates, dangling ``requires``, cycles), cron and time zone, and what each task
type needs. Each refusal is a ``DagValidationError`` whose ``field`` is a document path
(``dag.schedule``, ``tasks[1].requires``) so the author can find the line to fix.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import json
import re
import reprlib
from collections.abc import Iterable, Mapping
from typing import Any

from kiok.core.cron import load_zone, parse_timezone, validate_cron
from kiok.core.placeholders import has_placeholders, param_names, run_value_names, shell_single_quoted_params
from kiok.core.placement import single_quoted_problem
from kiok.core.run_interval import RUN_VALUE_NAMES
from kiok.dag.notify import NotifyEvent, WebhookTarget
from kiok.dag.params import ParamRule, check_names
from kiok.dag.spec import DagSpec, TaskSpec, TaskType, TriggerRule
from kiok.errors import DagValidationError

#: DAG and task ids end up in URLs, run ids and file names, so they stay in a safe charset.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}\Z")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
#: What an http task's ``config`` may hold (docs/dags.md, "http").
HTTP_CONFIG_KEYS = ("url", "method", "body", "headers")
_HEADERS = "expected a JSON object of header names to string values"
#: RFC 9110: a header name is a token; a value is printable ASCII, space and tab (obs-text
#: aside, which httpx does not send).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
#: Shows a header name in an error without quoting a megabyte of it (never a value: it may
#: hold a secret).
_SHORT = reprlib.Repr()
_SHORT.maxstring = 60
MAX_RETRIES = 100
_PLACEHOLDER_PREFIXES = ("${", "#{")


def check_id(value: object, field: str) -> str:
    """``value`` if it is a valid DAG/task/param id, else an error naming the charset."""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise DagValidationError(
            f"invalid id {value!r}: use 1-200 characters from A-Z a-z 0-9 _ . - "
            "starting with a letter or digit",
            field=field,
        )
    return value


def parse_task_type(value: object, field: str) -> TaskType:
    if isinstance(value, str) and value in TaskType.__members__.values():
        return TaskType(value)
    allowed = ", ".join(t.value for t in TaskType)
    raise DagValidationError(f"unknown task type {value!r}; allowed: {allowed}", field=field)


def parse_trigger_rule(value: object, field: str) -> TriggerRule:
    if isinstance(value, str) and value in TriggerRule.__members__.values():
        return TriggerRule(value)
    allowed = ", ".join(r.value for r in TriggerRule)
    raise DagValidationError(f"unknown trigger rule {value!r}; allowed: {allowed}", field=field)


def normalize_labels(labels: Iterable[object], field: str) -> tuple[str, ...]:
    """Lower-case, stripped, sorted, without duplicates: routing compares labels as sets."""
    out: set[str] = set()
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise DagValidationError(
                f"labels must be non-empty strings, got {label!r}", field=f"{field}[{i}]"
            )
        out.add(label.strip().lower())
    return tuple(sorted(out))


def check_param_value(value: object, field: str) -> object:
    """A JSON-compatible copy of ``value``; YAML dates become ISO strings.

    Params are stored and shipped to workers as JSON, so anything else (a YAML timestamp, a
    Python object from the SDK) is refused here rather than failing later on the wire.
    """
    if isinstance(value, str) and "\x00" in value:
        # Trigger args may not hold one either (kiok.dag.params): a task would fail to start.
        raise DagValidationError(
            "contains a NUL character, which no environment variable (KIOK_PARAM_<NAME>) can hold",
            field=field,
        )
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise DagValidationError("NaN and infinity are not valid JSON", field=field)
        return value
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [check_param_value(v, f"{field}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        for k in value:
            if not isinstance(k, str):
                raise DagValidationError(f"mapping keys must be strings, got {k!r}", field=field)
            check_param_value(k, field)
        return {k: check_param_value(v, f"{field}.{k}") for k, v in value.items()}
    raise DagValidationError(f"value of type {type(value).__name__} is not JSON-compatible", field=field)


def validate(spec: DagSpec, *, registering: bool = False) -> DagSpec:
    """The canonical form of ``spec`` (labels normalised, params made JSON-compatible, a name
    equal to the id dropped, as ``DagSpec.to_dict`` does).

    ``registering``: a new source (API, CLI), where the time zone must not depend on the
    host (``localtime``), a cron step must fit its field and an http task's config must
    hold only known keys and headers of the right shape; False (a stored spec compiled
    again) accepts what earlier versions stored, so those DAGs keep loading.

    Raises ``DagValidationError`` on the first problem found, in document order.
    """
    params, rules = validate_dag_fields(spec, registering=registering)
    if not spec.tasks:
        raise DagValidationError("a DAG needs at least one task", field="tasks")
    seen: dict[str, int] = {}
    for i, task in enumerate(spec.tasks):
        check_id(task.id, f"tasks[{i}].id")
        if task.id in seen:
            raise DagValidationError(
                f"duplicate task id {task.id!r} (also tasks[{seen[task.id]}])", field=f"tasks[{i}].id"
            )
        seen[task.id] = i
    for i, task in enumerate(spec.tasks):
        _check_task(task, f"tasks[{i}]", seen, registering)
    if not spec.allow_extra_args:
        _check_param_references(spec)
    _check_run_references(spec)
    if registering:  # a stored DAG still loads: its attempts fail saying why
        _check_shell_quotes(spec)
    cycle = _find_cycle(spec.tasks)
    if cycle:
        raise DagValidationError(
            f"cycle: {_cycle_text(cycle)} (each task requires the one before it)", field="tasks"
        )
    labels = normalize_labels(spec.labels, "dag.labels")
    name = "" if spec.name == spec.id else spec.name
    if labels != spec.labels or name != spec.name or params != spec.params or rules != spec.param_rules:
        return dataclasses.replace(spec, labels=labels, name=name, params=params, param_rules=rules)
    return spec


def validate_dag_fields(
    spec: DagSpec, *, registering: bool = False
) -> tuple[dict[str, Any], dict[str, ParamRule]]:
    """The checks of the DAG's own fields (``dag.*``), which need none of its tasks (``validate``
    makes them first): a document is checked with them before its tasks are parsed, so that
    its first problem is reported in document order (an invalid ``dag.schedule`` was reported
    after a task's unreadable ``timeout``; found by the UI review). Returns the params and the
    rules in their canonical form."""
    check_id(spec.id, "dag.id")
    if spec.schedule is not None:
        try:
            validate_cron(spec.schedule, stored=not registering)
        except ValueError as e:
            raise DagValidationError(str(e), field="dag.schedule") from None
    try:
        (parse_timezone if registering else load_zone)(spec.timezone)
    except ValueError as e:
        raise DagValidationError(str(e), field="dag.timezone") from None
    if isinstance(spec.max_active_runs, bool) or spec.max_active_runs < 1:
        raise DagValidationError(
            f"must be an int >= 1, got {spec.max_active_runs!r}", field="dag.max_active_runs"
        )
    _positive(spec.default_timeout_ms, "dag.default_timeout")
    _positive(spec.run_timeout_ms, "dag.run_timeout")
    _positive(spec.retention_ms, "dag.retention")
    _positive(spec.sla_ms, "dag.sla")
    _check_notify(spec)
    _check_python(spec.python, "dag.python")
    check_names(list(dict.fromkeys([*spec.params, *spec.param_rules])), "dag.params")
    params = {k: check_param_value(v, f"dag.params.{k}") for k, v in spec.params.items()}
    # {default: x} alone constrains nothing: the same as the plain default x
    rules = {n: r for n, r in spec.param_rules.items() if r != ParamRule(n, True, r.default)}
    if spec.schedule is not None:
        for name, rule in spec.param_rules.items():
            if not rule.has_default:
                raise DagValidationError(
                    "a scheduled DAG's params need a default (scheduled runs have no args)",
                    field=f"dag.params.{name}",
                )
    return params, rules


def _check_notify(spec: DagSpec) -> None:
    """What the shape alone cannot say: an SLA-miss target needs an SLA, and a webhook is
    sent by the leader for the run as a whole, where no ``${params.x}`` has a value."""
    if spec.notify.on_sla_miss and spec.sla_ms is None:
        raise DagValidationError("on_sla_miss needs dag.sla (e.g. sla: 10m)", field="dag.notify.on_sla_miss")
    for event in NotifyEvent:
        for i, target in enumerate(spec.notify.targets(event)):
            if isinstance(target, WebhookTarget):
                for where, text in [
                    ("url", target.url),
                    *((f"headers.{k}", v) for k, v in target.headers.items()),
                ]:
                    if param_names(text):
                        raise DagValidationError(
                            "a notification may use ${conn.*} and ${secret.*}, not ${params.*}",
                            field=f"dag.notify.{event.value}[{i}].webhook.{where}",
                        )


def _check_param_references(spec: DagSpec) -> None:
    """A ``${params.x}`` naming no declared param would fail every run: refuse it now."""
    known = {*spec.params, *spec.param_rules}
    for i, task in enumerate(spec.tasks):
        texts = [("script", task.script or "")] + [(f"config.{k}", v) for k, v in task.config.items()]
        for where, text in texts:
            for name in param_names(text):
                if name not in known:
                    raise DagValidationError(
                        f"${{params.{name}}} names no param of this DAG; declared: {sorted(known) or 'none'} "
                        "(declare it under dag.params, or set dag.allow_extra_args)",
                        field=f"tasks[{i}].{where}",
                    )


def _check_shell_quotes(spec: DagSpec) -> None:
    """A ``${params.x}`` inside single quotes in a shell script would fail every attempt
    (``kiok.core.placement.single_quoted``): refuse it now, saying what to write instead."""
    for i, task in enumerate(spec.tasks):
        if task.type is TaskType.SHELL and task.script:
            quoted = shell_single_quoted_params(task.script)
            if quoted:
                raise DagValidationError(single_quoted_problem(quoted[0]), field=f"tasks[{i}].script")


def _check_run_references(spec: DagSpec) -> None:
    """A ``${run.x}`` kiok does not know would fail every run; in a notification, where no
    single run's values are at hand, none has a value."""
    for i, task in enumerate(spec.tasks):
        texts = [("script", task.script or "")] + [(f"config.{k}", v) for k, v in task.config.items()]
        for where, text in texts:
            for name in sorted(run_value_names(text)):
                if name not in RUN_VALUE_NAMES:
                    known = ", ".join(f"${{run.{n}}}" for n in RUN_VALUE_NAMES)
                    raise DagValidationError(
                        f"unknown placeholder ${{run.{name}}}; known: {known}", field=f"tasks[{i}].{where}"
                    )
    for event in NotifyEvent:
        for i, target in enumerate(spec.notify.targets(event)):
            if isinstance(target, WebhookTarget):
                for where, text in [
                    ("url", target.url),
                    *((f"headers.{k}", v) for k, v in target.headers.items()),
                ]:
                    if run_value_names(text):
                        raise DagValidationError(
                            "a notification may use ${conn.*} and ${secret.*}, not ${run.*}",
                            field=f"dag.notify.{event.value}[{i}].webhook.{where}",
                        )


def _check_task(task: TaskSpec, at: str, ids: Mapping[str, int], registering: bool) -> None:
    kind = parse_task_type(task.type, f"{at}.type")
    parse_trigger_rule(task.trigger_rule, f"{at}.trigger_rule")
    for dep in task.requires:
        if dep == task.id:
            raise DagValidationError(f"task {task.id!r} requires itself", field=f"{at}.requires")
        if dep not in ids:
            raise DagValidationError(
                f"task {task.id!r} requires unknown task {dep!r}", field=f"{at}.requires"
            )
    if isinstance(task.retries, bool) or not 0 <= task.retries <= MAX_RETRIES:
        raise DagValidationError(
            f"must be an int from 0 to {MAX_RETRIES}, got {task.retries!r}", field=f"{at}.retries"
        )
    if task.retry_delay_ms < 0:
        raise DagValidationError("must not be negative", field=f"{at}.retry_delay")
    _positive(task.max_retry_delay_ms, f"{at}.max_retry_delay")
    _positive(task.timeout_ms, f"{at}.timeout")
    for key, value in task.config.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise DagValidationError("config must map strings to strings", field=f"{at}.config.{key}")
    if task.python is not None and kind is not TaskType.PYTHON:
        raise DagValidationError(
            f"only python tasks take an interpreter; this one is a {kind.value} task", field=f"{at}.python"
        )
    _check_python(task.python, f"{at}.python")
    if kind in (TaskType.SHELL, TaskType.PYTHON):
        if task.script is None or not task.script.strip():
            raise DagValidationError(
                f"{kind.value} task {task.id!r} needs a non-empty script", field=f"{at}.script"
            )
    elif kind is TaskType.HTTP:
        _check_http(task, at, registering)


def _check_http(task: TaskSpec, at: str, registering: bool) -> None:
    """``registering``: also refuse unknown config keys and headers that are no object of
    strings, which earlier versions stored (the executor fails such a task at run time)."""
    if task.script is not None:
        raise DagValidationError("http tasks take config.url/method/body, not script", field=f"{at}.script")
    if registering:
        for key in task.config:
            if key not in HTTP_CONFIG_KEYS:
                close = difflib.get_close_matches(key, HTTP_CONFIG_KEYS, n=1)
                hint = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else f"allowed: {', '.join(sorted(HTTP_CONFIG_KEYS))}"
                )
                raise DagValidationError(f"unknown key {key!r}; {hint}", field=f"{at}.config.{key}")
    url = task.config.get("url", "").strip()
    if not url:
        raise DagValidationError(f"http task {task.id!r} needs config.url", field=f"{at}.config.url")
    if not url.startswith(("http://", "https://", *_PLACEHOLDER_PREFIXES)):
        raise DagValidationError(
            f"url must start with http:// or https://, got {url!r}", field=f"{at}.config.url"
        )
    method = task.config.get("method", "GET")
    if method not in HTTP_METHODS and not method.startswith(_PLACEHOLDER_PREFIXES):
        raise DagValidationError(
            f"unknown method {method!r}; allowed: {', '.join(HTTP_METHODS)}", field=f"{at}.config.method"
        )
    headers = task.config.get("headers", "")
    if registering and not (has_placeholders(headers) and not _is_json(headers)):
        # Text that is JSON only once its placeholders are placed ('${params.h}', a param
        # holding the object) is the executor's to check, as it is resolved per run.
        try:
            for name, value in http_headers(headers).items():
                problem = None if has_placeholders(name + value) else header_problem(name, value)
                if problem is not None:
                    raise ValueError(problem)
        except ValueError as e:
            raise DagValidationError(str(e), field=f"{at}.config.headers") from None


def http_headers(text: str) -> dict[str, str]:
    """The headers an http task's ``config.headers`` names: a JSON object of names to string
    values (YAML's mapping, JSON-encoded when the DAG was loaded), or a JSON string holding
    such an object: what ``headers: ${params.h}`` becomes when the param is a string of that
    JSON (placed as a JSON string literal), as a ``--arg`` is; '' names none.
    ``ValueError`` saying what else it is, never quoting it (it may hold a secret)."""
    if not text:
        return {}
    try:
        headers = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError(f"{_HEADERS}, got text that is not JSON") from None
    if isinstance(headers, str):  # one level only: a string of a string of JSON is no object
        try:
            headers = json.loads(headers)
        except (ValueError, RecursionError):
            raise ValueError(f"{_HEADERS}, got a string that is not JSON") from None
        if not isinstance(headers, dict):
            raise ValueError(f"{_HEADERS}, got a string holding {_json_kind(headers)}")
    if not isinstance(headers, dict):
        raise ValueError(f"{_HEADERS}, got {_json_kind(headers)}")
    for name, value in headers.items():
        if not isinstance(value, str):
            raise ValueError(f"{_HEADERS}; the value of {_SHORT.repr(name)} is {_json_kind(value)}")
    return headers


def header_problem(name: str, value: str) -> str | None:
    """Why a request cannot carry the header ``name: value`` (a name that is no HTTP token,
    a value with a control or non-ASCII character: CR and LF would split the request), or None."""
    if _HEADER_NAME.fullmatch(name) is None:
        return f"{_SHORT.repr(name)} is not a header name (letters, digits and !#$%&'*+-.^_`|~)"
    if _HEADER_VALUE.fullmatch(value) is None:
        return (
            f"the value of {_SHORT.repr(name)} holds a character a header cannot carry "
            "(only printable ASCII, space and tab)"
        )
    return None


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else "an array" if isinstance(value, list) else "an object"


def _check_python(path: object, field: str) -> None:
    """An interpreter is named by absolute path: a relative one would depend on each
    worker's directory and ``PATH``; placeholders are not resolved there."""
    if path is None:
        return
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path or path != path.strip():
        raise DagValidationError(
            f"an interpreter is an absolute path such as /opt/venv/bin/python3, got {path!r}", field=field
        )
    if len(path) > 4096:
        raise DagValidationError("an interpreter path is at most 4096 characters", field=field)


def _positive(ms: int | None, field: str) -> None:
    if ms is not None and ms <= 0:
        raise DagValidationError(f"must be greater than 0, got {ms}ms", field=field)


#: A cycle through more tasks than this is named by its first ones and a count.
_CYCLE_SHOWN = 20


def _cycle_text(cycle: list[str]) -> str:
    """``a -> b -> c -> a``; a long cycle as its first tasks, how many more, and the way back."""
    if len(cycle) <= _CYCLE_SHOWN + 1:
        return " -> ".join(cycle)
    more = len(cycle) - 1 - _CYCLE_SHOWN
    return f"{' -> '.join(cycle[:_CYCLE_SHOWN])} -> ... ({more} more tasks) -> {cycle[-1]}"


def _find_cycle(tasks: tuple[TaskSpec, ...]) -> list[str] | None:
    """One cycle as a closed path upstream -> downstream, or None; iterative, so deep DAGs are fine."""
    downstream: dict[str, list[str]] = {t.id: [] for t in tasks}
    for t in tasks:
        for dep in t.requires:
            downstream[dep].append(t.id)
    done: set[str] = set()
    for root in downstream:
        if root in done:
            continue
        path, on_path = [root], {root}
        stack = [iter(downstream[root])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
            elif nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(downstream[nxt]))
    return None
