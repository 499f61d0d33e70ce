"""Hostile input found by red-teaming the admin API, against the shared standalone: each
attack gets a 400 (or 401) naming the problem, never a 500, and writes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from kiok.testing.process import Standalone

_JSON = {"Content-Type": "application/json"}
#: A lone UTF-16 surrogate: valid JSON (``\\ud800``), but no UTF-8 string, so nothing can store it.
SURROGATE = "\\ud800"


@pytest.fixture(scope="module")
def k(shared_kiok: Standalone) -> Standalone:
    shared_kiok.register(
        "dag: {id: hostile, schedule: '0 0 1 1 *', params: {n: 1}}\ntasks: [{id: a, script: 'true'}]\n"
    )
    return shared_kiok


@pytest.mark.parametrize(
    ("path", "body", "problem"),
    [
        pytest.param(
            "/api/v1/iam/users",
            '{"user": "sur1", "password": "Pw-0123456789", "groups": ["' + SURROGATE + '"]}',
            "groups[0]: ",
            id="iam-user-group",
        ),
        pytest.param(
            "/api/v1/iam/groups",
            '{"group": "sur1", "policies": ["x' + SURROGATE + '"]}',
            "policies[0]: ",
            id="group",
        ),
        pytest.param(
            "/api/v1/dags/hostile/runs",
            '{"args": {"' + SURROGATE + '": 1}}',
            "args: a key is not valid Unicode",
            id="trigger-key",
        ),
        pytest.param(
            "/api/v1/dags/hostile/runs", '{"arg": {"n": 5}}', "arg: Extra inputs", id="trigger-typo"
        ),
        pytest.param(
            "/api/v1/dags/hostile/backfill",
            '{"from": "0001-01-01", "to": "2026-01-01"}',
            "from: '0001-01-01' is out of range",
            id="backfill-year-1",
        ),
        pytest.param(
            "/api/v1/dags/hostile/backfill",
            '{"from": "2026-01-01", "to": "9999-12-31"}',
            "to: '9999-12-31' is out of range",
            id="backfill-year-9999",
        ),
        pytest.param(
            "/api/v1/dags",
            '{"dag": {"id": "sur1", "params": {"p": "a\\u0000b"}}, "tasks": [{"id": "a", "script": "true"}]}',
            "dag.params.p: contains a NUL character",
            id="dag-param-nul",
        ),
    ],
)
def test_hostile_bodies_get_a_400_and_write_nothing(
    k: Standalone, path: str, body: str, problem: str
) -> None:
    runs_before = k.api("GET", "/api/v1/runs?dag=hostile").json()["runs"]
    r = k.api("POST", path, content=body, headers=_JSON)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] in ("invalid_input", "invalid_dag"), r.text
    assert problem in r.json()["error"]["message"], r.text
    listed = [k.api("GET", f"/api/v1/{what}").text for what in ("iam/users", "iam/groups", "dags")]
    assert "sur1" not in "".join(listed)
    assert k.api("GET", "/api/v1/runs?dag=hostile").json()["runs"] == runs_before
    assert "Traceback" not in k.read_log()


def test_a_duplicated_authorization_header_is_refused(k: Standalone) -> None:
    good, bad = f"Bearer {k.token}", "Bearer forged"
    for first, second in ((good, bad), (bad, good), (good, good)):
        request = httpx.Request(
            "GET", k.url + "/api/v1/dags", headers=[("Authorization", first), ("Authorization", second)]
        )
        with httpx.Client() as client:
            r = client.send(request)
        assert r.status_code == 401, r.text
        assert "more than one Authorization header" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "headers", "problem"),
    [
        ('{"user": "admin"', _JSON, "body: invalid JSON at character 16: Expecting"),
        (
            '{"user": "admin", "password": "x"}',
            {"Content-Type": "text/plain"},
            "Content-Type: application/json",
        ),
    ],
)
def test_a_body_that_is_not_json_is_named_as_such(
    k: Standalone, body: str, headers: dict[str, str], problem: str
) -> None:
    r = k.api("POST", "/api/v1/auth/login", content=body, headers=headers, auth=False)
    assert r.status_code == 400 and problem in r.json()["error"]["message"], r.text


YAML = {"Content-Type": "application/yaml"}


@pytest.mark.parametrize(
    ("path", "kw"),
    [
        ("/api/v1/iam/users", {"json": {"user": "admin\n", "password": "Newline-Password-1"}}),
        ("/api/v1/connections", {"json": {"connectionId": "prod-db\n", "properties": {}}}),
        (
            "/api/v1/dags",
            {"content": 'dag: {id: "nl\\n"}\ntasks: [{id: t, script: "true"}]\n', "headers": YAML},
        ),
        (
            "/api/v1/dags",
            {"content": 'dag: {id: nl}\ntasks: [{id: "t\\n", script: "true"}]\n', "headers": YAML},
        ),
        (
            "/api/v1/dags",
            {
                "content": 'dag: {id: nl, params: {"p\\n": 1}}\ntasks: [{id: t, script: "true"}]\n',
                "headers": YAML,
            },
        ),
    ],
)
def test_a_name_ending_in_a_newline_is_refused(k: Standalone, path: str, kw: dict[str, Any]) -> None:
    """``$`` in a pattern also matches before a final newline: ``admin\\n`` became a second
    user shown as ``admin``, and DAG, task, param and connection names took one too."""
    r = k.api("POST", path, **kw)
    assert r.status_code == 400, r.text
