"""Property: every valid spec survives to_dict -> document -> spec, and through JSON and YAML."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiok.dag.load import spec_from_document, spec_from_json, spec_from_yaml
from kiok.dag.params import ParamRule
from kiok.dag.spec import DagSpec, TaskSpec, TaskType, TriggerRule
from kiok.dag.validate import validate
from kiok.ids import DagId, TaskId

ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,12}\Z")
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
positive_ms = st.integers(1, 10**10)
param_names = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,12}\Z")


@st.composite
def param_rules(draw: st.DrawFn, name: str) -> ParamRule:
    kind = draw(st.sampled_from([None, "string", "integer"]))
    if kind == "integer":
        return ParamRule(
            name, True, draw(st.integers(0, 9)), "integer", minimum=0, maximum=draw(st.integers(9, 99))
        )
    values = draw(st.lists(st.from_regex(r"\A[a-z]{1,5}\Z"), min_size=1, max_size=3, unique=True))
    has_default = draw(st.booleans())
    return ParamRule(
        name,
        has_default=has_default,
        default=values[0] if has_default else None,
        type=kind,
        enum=tuple(values) if draw(st.booleans()) else None,
        max_length=draw(st.none() | st.integers(5, 50)),
        description=draw(text),
    )


@st.composite
def specs(draw: st.DrawFn) -> DagSpec:
    task_ids = draw(st.lists(ids, min_size=1, max_size=6, unique=True))
    tasks = []
    for i, tid in enumerate(task_ids):
        kind = draw(st.sampled_from(TaskType))
        config = draw(st.dictionaries(text, text, max_size=3))
        if kind is TaskType.HTTP:  # only the documented keys, headers an object of strings
            config = draw(st.dictionaries(st.just("body"), text))
            config["url"] = "https://example.invalid/" + draw(st.from_regex(r"\A[a-z]{0,5}\Z"))
            config["method"] = draw(st.sampled_from(["GET", "POST", "DELETE"]))
            if draw(st.booleans()):
                headers = draw(st.dictionaries(ids, st.from_regex(r"\A[ -~]{0,12}\Z"), max_size=2))
                config["headers"] = json.dumps(headers)
        tasks.append(
            TaskSpec(
                id=TaskId(tid),
                type=kind,
                script=None if kind is TaskType.HTTP else "echo " + draw(text),
                requires=tuple(TaskId(t) for t in draw(st.lists(st.sampled_from(task_ids[:i]), unique=True)))
                if i
                else (),
                trigger_rule=draw(st.sampled_from(TriggerRule)),
                retries=draw(st.integers(0, 100)),
                retry_delay_ms=draw(st.integers(0, 10**9)),
                retry_exponential_backoff=draw(st.booleans()),
                max_retry_delay_ms=draw(st.none() | positive_ms),
                timeout_ms=draw(st.none() | positive_ms),
                config=config,
            )
        )
    names = draw(
        st.lists(param_names, max_size=5, unique_by=lambda n: n.upper()).filter(lambda ns: len(ns) < 6)
    )
    params: dict[str, Any] = {}
    rules: dict[str, ParamRule] = {}
    schedule = draw(st.sampled_from([None, "0 2 * * *", "*/5 * * * 1-5", "30 2 1 * *"]))
    for name in names:
        if draw(st.booleans()):
            params[name] = draw(json_values)
            continue
        rule = draw(param_rules(name))
        if schedule is not None and not rule.has_default:
            rule = dataclasses.replace(rule, has_default=True, default=rule.enum[0] if rule.enum else "a")
        rules[name] = rule
        if rule.has_default:
            params[name] = rule.default
    spec = DagSpec(
        id=DagId(draw(ids)),
        tasks=tuple(tasks),
        name=draw(text),
        description=draw(text),
        schedule=schedule,
        timezone=draw(st.sampled_from(["UTC", "Europe/Berlin", "Asia/Seoul"])),
        catchup=draw(st.booleans()),
        max_active_runs=draw(st.integers(1, 1000)),
        default_timeout_ms=draw(st.none() | positive_ms),
        retention_ms=draw(st.none() | positive_ms),
        labels=tuple(draw(st.lists(st.from_regex(r"\A[a-z0-9-]{1,8}\Z")))),
        params=params,
        param_rules=rules,
        allow_extra_args=draw(st.booleans()),
    )
    return validate(spec)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_round_trip(spec: DagSpec) -> None:
    doc: dict[str, Any] = spec.to_dict()
    assert spec_from_document(doc) == spec
    assert spec_from_json(json.dumps(doc)) == spec
    assert spec_from_yaml(yaml.safe_dump(doc, allow_unicode=True)) == spec
