"""Issue 13 §1: a trigger argument is data, never code.

A user allowed only ``dags:Trigger`` on the README's ``hello`` DAG once passed
``name = x"; id; head -c 12 ../../master.key; echo "`` and got ``uid=0(root)`` and the start
of the master key. Here the same user tries that and its cousins against a real standalone.
"""

from __future__ import annotations

import httpx
import pytest

from kiok.testing.process import Standalone

HELLO = """
dag:
  id: hello
  params: {name: world}
tasks:
  - {id: greet, type: shell, script: 'echo "hello ${params.name}"'}
  - {id: bare, type: shell, script: 'echo hello ${params.name}'}
  - {id: py, type: python, script: 'print("hello ${params.name}")'}
  - {id: py_single, type: python, script: "print('hello ' + '${params.name}')"}
"""

CONSTRAINED = """
dag:
  id: constrained
  params:
    region: {default: eu, enum: [eu, us]}
    n: {type: integer, minimum: 1, default: 1}
tasks:
  - {id: t, script: 'echo ${params.region} $((${params.n} + 1))'}
"""

# An untyped param in bash arithmetic: a text there would run what its subscript holds.
ARITHMETIC = """
dag:
  id: arithmetic
  params: {n: 1, m: "1+1"}
tasks:
  - {id: count, script: "#!/bin/bash\\necho $(( ${params.n} + 1 ))"}
  - {id: late, script: "#!/bin/bash\\n[[ ${params.m} -gt 0 ]] && echo big; ls", requires: [count]}
"""

# A default bash would run: shell tasks refuse it even unplaced (``$((KIOK_PARAM_V))`` is
# the script's own doing); a python task takes it as any text.
RUNNABLE_DEFAULT = """
dag:
  id: runnable_default
  params: {v: "a[$(touch pwned)]"}
tasks:
  - {id: sh, script: "#!/bin/bash\\necho $(( KIOK_PARAM_V ))"}
  - {id: py, type: python, script: "import os; print(os.environ['KIOK_PARAM_V'])"}
"""

HOSTILE = [
    'x"; id; head -c 12 ../../master.key; echo "',
    "a; id",
    "line\nid",
    '"); import os; os.system("id"); ("',
    "'); import os; os.system('id'); ('",
    "\\",
]


@pytest.fixture(scope="module")
def k(shared_kiok: Standalone) -> Standalone:
    shared_kiok.register(HELLO)
    shared_kiok.register(CONSTRAINED)
    shared_kiok.register(ARITHMETIC)
    shared_kiok.register(RUNNABLE_DEFAULT)
    policy = {"Statement": [{"Effect": "Allow", "Action": "dags:Trigger", "Resource": "dag/hello"}]}
    r = shared_kiok.api("POST", "/api/v1/iam/policies", json={"policy": "trigger-hello", "document": policy})
    assert r.status_code == 201, r.text
    r = shared_kiok.api(
        "POST", "/api/v1/iam/groups", json={"group": "triggerers", "policies": ["trigger-hello"]}
    )
    assert r.status_code == 201, r.text
    user = {"user": "trigger", "password": "Trigger-Pw-0123", "groups": ["triggerers"]}
    r = shared_kiok.api("POST", "/api/v1/iam/users", json=user)
    assert r.status_code == 201, r.text
    return shared_kiok


def trigger_as_user(k: Standalone, dag: str, args: dict[str, object]) -> httpx.Response:
    login = httpx.post(k.url + "/api/v1/auth/login", json={"user": "trigger", "password": "Trigger-Pw-0123"})
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['accessToken']}"}
    return httpx.post(f"{k.url}/api/v1/dags/{dag}/runs", headers=headers, json={"args": args}, timeout=30)


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_trigger_arg_reaches_every_task_as_data(k: Standalone, value: str) -> None:
    r = trigger_as_user(k, "hello", {"name": value})
    assert r.status_code == 201, r.text
    run = k.wait_run(r.json()["runId"])
    assert run["state"] == "SUCCESS", run
    for task in ("greet", "bare", "py", "py_single"):
        out = k.log(run["runId"], task)
        assert "uid=" not in out
        assert out == f"hello {value}\n", (task, out)


# The reported attack: in a script that reads as safe (the same text written with
# $KIOK_PARAM_JOB would be), the value was spliced into quoted text that the shell parses
# again at exit, and ran there as a trigger-only user's code.
TRAP = r"""
dag:
  id: deploy
  params: {job: {default: nightly, maxLength: 200}}
tasks:
  - id: t
    type: shell
    script: |
      trap 'echo "finished ${params.job}"' EXIT
      echo "working on ${params.job}"
"""


@pytest.mark.parametrize(
    "script", ["trap 'echo \"finished ${params.job}\"' EXIT", "sh -c 'echo ${params.job}'"]
)
def test_a_param_inside_single_quotes_is_refused_at_registration(k: Standalone, script: str) -> None:
    dag = (
        TRAP
        if script.startswith("trap")
        else TRAP.replace("trap 'echo \"finished ${params.job}\"' EXIT", script)
    )
    r = k.api("POST", "/api/v1/dags", content=dag, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_dag", r.text
    assert "tasks[0].script: ${params.job} stands inside single quotes" in error["message"], r.text
    assert '"$KIOK_PARAM_JOB"' in error["message"], r.text
    assert k.api("GET", "/api/v1/dags/deploy").status_code == 404


def test_the_readme_example_still_greets(k: Standalone) -> None:
    run = k.wait_run(k.trigger("hello", {"name": "kiok"}))
    assert k.log(run["runId"], "greet") == "hello kiok\n"


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        ({"region": "mars"}, 400, "args.region"),
        ({"n": "3; id"}, 400, "args.n: expected an integer"),
        ({"other": "x"}, 400, "args.other: unknown param"),
        ({"region": "eu\u0000"}, 400, "NUL"),
        ({"region": "x" * (1 << 20)}, None, "args.region"),
    ],
)
def test_args_breaking_the_declared_params_are_refused(
    k: Standalone, args: dict[str, object], status: int | None, message: str
) -> None:
    before = len(k.api("GET", "/api/v1/runs?dag=constrained&limit=100").json()["runs"])
    r = k.api("POST", "/api/v1/dags/constrained/runs", json={"args": args})
    if status is None:  # 1 MiB: refused by the body limit or by the param check
        assert r.status_code in (400, 413), r.text
    else:
        assert r.status_code == status, r.text
        assert message in r.json()["error"]["message"]
    assert len(k.api("GET", "/api/v1/runs?dag=constrained&limit=100").json()["runs"]) == before


def test_typed_args_reach_arithmetic_as_numbers(k: Standalone) -> None:
    run = k.wait_run(k.trigger("constrained", {"region": "us", "n": "41"}))
    assert run["state"] == "SUCCESS"
    assert k.log(run["runId"], "t") == "us 42\n"


@pytest.mark.parametrize(
    ("dag", "args", "message"),
    [
        (
            "arithmetic",
            {"n": "1+1"},
            "args.n: task 'count': param 'n' stands where the shell evaluates arithmetic",
        ),
        (
            "arithmetic",
            {"n": "a[$(touch pwned)]"},
            "args.n: param 'n' holds text bash would expand",
        ),
        ("hello", {"name": "x[`touch pwned`]"}, "args.name: param 'name' holds text bash would expand"),
        # Nested or quoted brackets (a reported attack: these passed and ran).
        ("hello", {"name": "x[b[0]$(touch pwned)]"}, "args.name: param 'name' holds text bash would expand"),
        ("hello", {"name": "a[']'$(touch pwned)]"}, "args.name: param 'name' holds text bash would expand"),
        # Text bash could expand, with no '[' (a reported attack: a script that writes the '['
        # around the placeholder, read -r "seen[${params.k}]", ran it).
        ("hello", {"name": "$(id)"}, "args.name: param 'name' holds text bash would expand"),
        ("hello", {"name": "`id`"}, "args.name: param 'name' holds text bash would expand"),
    ],
)
def test_a_value_bash_would_run_is_refused_before_a_run_exists(
    k: Standalone, dag: str, args: dict[str, object], message: str
) -> None:
    before = len(k.api("GET", f"/api/v1/runs?dag={dag}&limit=100").json()["runs"])
    r = k.api("POST", f"/api/v1/dags/{dag}/runs", json={"args": args})
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]["message"]
    assert len(k.api("GET", f"/api/v1/runs?dag={dag}&limit=100").json()["runs"]) == before


def test_a_text_default_in_bash_arithmetic_fails_its_task_saying_why(k: Standalone) -> None:
    run = k.wait_run(k.trigger("arithmetic", {"n": 41}))
    assert k.log(run["runId"], "count") == "42\n"
    late = run["tasks"]["late"]
    assert late["state"] == "FAILED", run
    assert "param 'm' stands where the shell evaluates arithmetic" in late["error"]


def test_a_shell_task_never_gets_a_value_bash_would_run(k: Standalone) -> None:
    run = k.wait_run(k.trigger("runnable_default"))
    tasks = run["tasks"]
    assert tasks["sh"]["state"] == "FAILED", run
    assert "param 'v' holds text bash would expand" in tasks["sh"]["error"]
    assert tasks["py"]["state"] == "SUCCESS", run
    assert k.log(run["runId"], "py") == "a[$(touch pwned)]\n"
