"""Declared params and the trigger args checked against them."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from kiok.core.placeholders import param_env
from kiok.dag.load import spec_from_document, spec_from_yaml
from kiok.dag.params import MAX_ARGS_BYTES, MAX_PARAMS, MAX_VALUE_BYTES, check_args, check_default_sizes
from kiok.dag.spec import DagSpec
from kiok.errors import DagValidationError, InvalidInput

DAG = """
dag:
  id: p
  params:
    region: {default: eu, enum: [eu, us]}
    n: {type: integer, minimum: 1, maximum: 10, default: 2}
    tag: {type: string, pattern: "[a-z]+", maxLength: 8}
    plain: hello
    cfg: {a: 1}
tasks:
  - {id: t, script: 'echo ${params.region} ${params.n} ${params.tag} ${params.plain}'}
"""


def check(spec: DagSpec, args: Any) -> dict[str, Any]:
    return check_args(spec.params, spec.param_rules, spec.allow_extra_args, args)


def test_declared_params_load_and_round_trip() -> None:
    spec = spec_from_yaml(DAG)
    assert spec.params == {"region": "eu", "n": 2, "plain": "hello", "cfg": {"a": 1}}
    assert set(spec.param_rules) == {"region", "n", "tag"}
    assert spec.param_rules["tag"].has_default is False
    assert spec_from_yaml(DAG).to_dict() == spec.to_dict()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"tag": "ok", "region": "mars"}, "args.region: 'mars' is not one of ['eu', 'us']"),
        ({"tag": "ok", "n": 0}, "args.n: 0 is below minimum 1"),
        ({"tag": "ok", "n": "many"}, "args.n: expected an integer"),
        ({"tag": "Bad!"}, "args.tag: 'Bad!' does not match pattern"),
        ({"tag": "abcdefghij"}, "args.tag: longer than maxLength 8"),
        ({}, "args.tag: required"),
        ({"tag": "ok", "other": 1}, "args.other: unknown param"),
        ({"tag": "ok", "plain": "a\x00b"}, "args.plain: contains a NUL character"),
        ({"tag": "ok", "plain": "x" * (MAX_VALUE_BYTES + 1)}, "args.plain: longer than"),
        ({"tag": "ok", "plain": 10**30}, "args.plain: integer out of range"),
        ([1, 2], "args must be a JSON object"),
    ],
)
def test_bad_args_are_refused_naming_the_param(args: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as e:
        check(spec_from_yaml(DAG), args)
    assert message in e.value.message


def test_good_args_pass_and_cli_strings_are_converted() -> None:
    assert check(spec_from_yaml(DAG), {"tag": "ok", "n": "3", "region": "us"}) == {
        "tag": "ok",
        "n": 3,
        "region": "us",
    }


def test_extra_args_only_when_the_dag_allows_them() -> None:
    spec = spec_from_yaml(DAG.replace("  id: p\n", "  id: p\n  allow_extra_args: true\n"))
    assert check(spec, {"tag": "ok", "other": "x"})["other"] == "x"
    with pytest.raises(InvalidInput, match="invalid param name"):
        check(spec, {"tag": "ok", "bad-name": "x"})
    # One variable, one value: a task's placed ${params.x} and its KIOK_PARAM_X never differ.
    with pytest.raises(
        InvalidInput,
        match=r"args\.REGION: would be the same variable \(KIOK_PARAM_REGION\) as a declared param",
    ):
        check(spec, {"tag": "ok", "REGION": "x"})
    with pytest.raises(
        InvalidInput, match=r"args\.FOO: would be the same variable \(KIOK_PARAM_FOO\) as args\.foo"
    ):
        check(spec, {"tag": "ok", "foo": "a", "FOO": "b"})
    # A run logged before this check existed is created by apply() as it was then.
    args = {"tag": "ok", "foo": "a", "FOO": "b"}
    assert check_args(spec.params, spec.param_rules, True, args, stored=True) == args


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("{a-b: 1}", "invalid param name 'a-b'"),
        ("{ab: 1, AB: 2}", "would both be KIOK_PARAM_AB"),
        ("{x: {default: zz, enum: [a, b]}}", "dag.params.x.default: 'zz' is not one of"),
        ("{x: {type: strng}}", "unknown type 'strng'"),
        ("{x: {default: 1, maxlenght: 3}}", "unknown constraint 'maxlenght'"),
        ("{x: {pattern: '('}}", "invalid regular expression"),
    ],
)
def test_bad_declarations_are_refused(params: str, message: str) -> None:
    with pytest.raises(DagValidationError, match=message):
        spec_from_yaml(f"dag: {{id: d, params: {params}}}\ntasks: [{{id: t, script: 'true'}}]")


def test_an_undeclared_param_reference_is_refused_at_registration() -> None:
    with pytest.raises(DagValidationError, match=r"tasks\[0\].script: \$\{params.nope\} names no param"):
        spec_from_yaml("dag: {id: d}\ntasks: [{id: t, script: 'echo ${params.nope}'}]")


def test_a_scheduled_dag_needs_defaults() -> None:
    with pytest.raises(DagValidationError, match="scheduled DAG's params need a default"):
        spec_from_yaml("dag: {id: d, schedule: '0 2 * * *', params: {x: {type: string}}}\ntasks: [{id: t}]")


NUMBERS = (
    "dag: {id: d, params: {x: {type: number, default: 1}, low: {type: number, maximum: 5, default: 1}}}\n"
)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"x": "1e999"}, "args.x: expected a number, got '1e999'"),
        ({"x": " -1E999 "}, "args.x: expected a number, got ' -1E999 '"),
        ({"x": "99999999e999"}, "args.x: expected a number, got '99999999e999'"),
        # infinity was below every maximum
        ({"low": "-1e999"}, "args.low: expected a number, got '-1e999'"),
    ],
)
def test_a_number_past_a_float_is_not_a_number(args: dict[str, str], message: str) -> None:
    """JSON has no infinity: an arg that would become one is refused, not stored to break
    every later read of the run."""
    spec = spec_from_yaml(NUMBERS + "tasks: [{id: t, script: 'true'}]")
    with pytest.raises(InvalidInput) as e:
        check(spec, args)
    assert e.value.message == message


def test_a_number_below_a_float_is_zero() -> None:
    spec = spec_from_yaml(NUMBERS + "tasks: [{id: t, script: 'true'}]")
    assert check(spec, {"x": "1e-999", "low": "-2.5e2"}) == {"x": 0.0, "low": -250.0}


def test_a_default_past_a_float_is_refused_at_registration_only() -> None:
    doc = "dag: {id: d, params: {x: {type: number, default: '1e999'}}}\ntasks: [{id: t, script: 'true'}]"
    with pytest.raises(DagValidationError) as e:
        spec_from_yaml(doc)
    assert "dag.params.x.default: expected a number, got '1e999'" in str(e.value)
    # A spec stored before this was refused still compiles: its runs go on (the task gets the text).
    stored = spec_from_document(
        {
            "dag": {"id": "d", "params": {"x": {"type": "number", "default": "1e999"}}},
            "tasks": [{"id": "t", "script": "true"}],
        }
    )
    assert stored.params == {"x": "1e999"}


def test_args_already_logged_are_decided_as_the_kiok_that_logged_them() -> None:
    """``apply()`` checks a logged trigger's args as stored: a replica must make the run an
    older leader made (it took ``'1e999'`` as infinity), not refuse it; the API refuses such
    args before proposing."""
    spec = spec_from_yaml(NUMBERS + "tasks: [{id: t, script: 'true'}]")
    stored = check_args(spec.params, spec.param_rules, spec.allow_extra_args, {"x": "1e999"}, stored=True)
    assert stored == {"x": float("inf")}


def test_a_refused_value_is_shown_as_json_not_as_python() -> None:
    """It said ``got True`` to a user who sent ``true``."""
    spec = spec_from_yaml(DAG)
    with pytest.raises(InvalidInput, match=r"^args\.n: expected an integer, got true$"):
        check(spec, {"n": True})


def test_args_are_sized_as_the_task_gets_them() -> None:
    """The attacker probe of session 29: the 256 KiB bound counted strings only, so a list of
    150,000 zeros (450 KB in the task's environment, past Linux's 128 KiB for one variable)
    was taken, and every task of the run failed to start ("Argument list too long")."""
    spec = spec_from_yaml(DAG)
    with pytest.raises(InvalidInput, match=r"^args\.plain: 450000 bytes as the task gets .*more than 65536"):
        check(spec, {"tag": "ok", "plain": [0] * 150_000})
    # JSON escapes what is not ASCII: 12,000 'é' are 24 KB of UTF-8, 72 KB in a list.
    assert check(spec, {"tag": "ok", "plain": "é" * 12_000})["plain"] == "é" * 12_000
    with pytest.raises(InvalidInput, match=r"^args\.plain: 72004 bytes"):
        check(spec, {"tag": "ok", "plain": ["é" * 12_000]})
    several = {"tag": "ok", **{f"p{i}": [1] * 20_000 for i in range(5)}}  # 60 KB each
    with pytest.raises(InvalidInput, match=r"^args: larger than 262144 bytes in all"):
        check(spec_from_yaml(DAG.replace("  id: p\n", "  id: p\n  allow_extra_args: true\n")), several)
    # A stored command's args are decided as when it was proposed: strings only.
    args = {"tag": "ok", "plain": [0] * 150_000}
    assert check_args(spec.params, spec.param_rules, False, args, stored=True)["plain"] == [0] * 150_000


def test_a_new_dags_defaults_are_bounded_as_args_are() -> None:
    big = DAG.replace("    plain: hello\n", f"    plain: {[0] * 40_000}\n")
    with pytest.raises(DagValidationError, match=r"default is 120000 bytes as the task gets it") as e:
        spec_from_yaml(big)
    assert e.value.field == "dag.params.plain"
    stored = spec_from_document(yaml.safe_load(big), registering=False)  # loads as it was taken
    assert len(stored.params["plain"]) == 40_000
    many = DAG.replace("    plain: hello\n", "".join(f"    d{i}: {[0] * 20_000}\n" for i in range(5)))
    with pytest.raises(DagValidationError, match=r"defaults larger than 262144 bytes in all"):
        spec_from_yaml(many)


def test_a_new_dag_declares_at_most_as_many_params_as_a_trigger_may_give() -> None:
    """The re-probe of session 29: 16,000 params, each with a 100-character name and an empty
    default, were counted as 16 bytes each; their variables alone came near the 2 MiB a
    process's environment may be, and args within every bound then kept shell tasks from
    starting."""
    names = [f"p{i:03d}" for i in range(MAX_PARAMS + 1)]
    many = (
        "dag:\n  id: many\n  params:\n"
        + "".join(f"    {n}: ''\n" for n in names)
        + "tasks: [{id: t, script: 'true'}]\n"
    )
    with pytest.raises(DagValidationError, match=rf"at most {MAX_PARAMS} params, got {MAX_PARAMS + 1}"):
        spec_from_yaml(many)
    stored = spec_from_document(yaml.safe_load(many), registering=False)  # loads as it was taken
    with pytest.raises(InvalidInput) as e:  # the error names 20 of them, not all
        check(stored, {"nope": 1})
    assert e.value.message.endswith(
        f"'p019', and {MAX_PARAMS + 1 - 20} more] (set dag.allow_extra_args to accept others)"
    )


def test_the_largest_params_and_args_taken_still_start_a_shell_task() -> None:
    """Every bound at once: 100 declared params with the longest names, their defaults as large
    as taken, and 100 more args (allow_extra_args) as large as taken: the environment a task
    gets from them still lets /bin/sh start."""

    def fill(prefix: str) -> dict[str, str]:
        names = [prefix + f"{i:03d}".rjust(99 - len(prefix), "x") for i in range(100)]
        return {n: "v" * (MAX_ARGS_BYTES // 100 - len(n) - 40) for n in names}

    defaults, args = fill("d"), fill("a")
    check_default_sizes(defaults)
    taken = check_args(defaults, {}, True, args)
    env = {**param_env({**defaults, **taken}), "PATH": "/usr/bin:/bin"}
    assert sum(len(k) + len(v) for k, v in env.items()) > 2 * MAX_ARGS_BYTES - 60_000
    assert subprocess.run(["/bin/sh", "-c", "true"], env=env, check=False).returncode == 0


def test_an_enum_or_pattern_an_arg_breaks_is_shown_cut_short() -> None:
    """The re-probe of session 29: a refused arg's error repeated the param's whole enum (a
    4 MB answer for 70,000 choices) or pattern."""
    choices = [f"value-{i:06d}" for i in range(70_000)]
    spec = spec_from_document(
        {
            "dag": {
                "id": "e",
                "params": {
                    "r": {"enum": choices, "default": choices[0]},
                    "w": {"type": "string", "pattern": "|".join(choices[:5000])},
                },
            },
            "tasks": [{"id": "t", "script": "true"}],
        }
    )
    for args, said in (
        ({"r": "mars"}, "is not one of ['value-000000'"),
        ({"w": "mars"}, "does not match pattern 'value-000000|"),
    ):
        with pytest.raises(InvalidInput) as e:
            check(spec, args)
        assert said in e.value.message and len(e.value.message) < 400, len(e.value.message)
        assert e.value.message.endswith(" characters)")
