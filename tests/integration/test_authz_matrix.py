"""The authorization matrix from an attacker's seat: a signed-in user whose policies grant
``dags:List``, ``dags:Read``, ``runs:List``, ``runs:Read``, ``logs:Read`` and
``dags:Trigger`` on ``dag/visible-*`` only must learn nothing about DAG ``secret-dag`` (its
id, runs, task ids, logs, args, connections) through any route of the admin API, and every
route must answer a hidden DAG or run exactly as it answers one that does not exist (no
403/404 oracle). One standalone for the module; every route comes from the app's OpenAPI
document, so a new route is in the sweep without editing this file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from kiok.master.api.app import create_app
from kiok.testing.process import Standalone

PW = "Matrix-Password-12345"
SECRET_DAG = """dag: {id: secret-dag, schedule: '0 0 * * *', params: {token: {default: hush}}}
tasks:
  - {id: secret-task, script: 'echo SECRET-LOG-LINE ${conn.secret-conn.user}; exit 1'}
  - {id: secret-down, requires: [secret-task], script: 'echo down'}
"""
VISIBLE_DAG = """dag: {id: visible-a, schedule: '0 0 * * *'}
tasks:
  - {id: vis-task, script: 'echo visible-log; exit 1'}
"""
#: Strings only the hidden DAG's records hold: none may reach the attacker.
MARKERS = ("secret-dag", "secret-task", "secret-down", "SECRET-LOG-LINE", "s3cr3t-arg", "secret-conn")
VIEWER = ["dags:List", "dags:Read", "runs:List", "runs:Read", "logs:Read", "dags:Trigger"]


def _routes() -> list[tuple[str, str]]:
    app = create_app(None, max_body_bytes=1024)  # type: ignore[arg-type]  # routes only
    return [(m.upper(), p) for p, item in app.openapi()["paths"].items() for m in item]


def _login(k: Standalone, user: str) -> dict[str, str]:
    r = httpx.post(k.url + "/api/v1/auth/login", json={"user": user, "password": PW})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['accessToken']}"}


def _call(k: Standalone, headers: dict[str, str], method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, k.url + path, headers=headers, timeout=30, **kw)


def _leaks(r: httpx.Response, asked: str = "") -> list[str]:
    """The markers in the answer, but for those the request itself named (echoed in errors)."""
    return [m for m in MARKERS if m in r.text and m.lower() not in unquote(asked).lower()]


class World:
    def __init__(self, k: Standalone, secret_run: str, visible_run: str) -> None:
        self.k = k
        self.secret_run = secret_run
        self.visible_run = visible_run
        self.eve = _login(k, "eve")
        self.dana = _login(k, "dana")

    def eve_get(self, path: str, **kw: Any) -> httpx.Response:
        return _call(self.k, self.eve, "GET", path, **kw)


@pytest.fixture(scope="module")
def world(shared_kiok: Standalone) -> Iterator[World]:
    k = shared_kiok
    conn = {"connectionId": "secret-conn", "properties": {"user": "conn-user"}}
    assert k.api("POST", "/api/v1/connections", json=conn).status_code == 201
    k.register(SECRET_DAG)
    k.register(VISIBLE_DAG)
    secret_run = k.trigger("secret-dag", {"token": "s3cr3t-arg"})
    visible_run = k.trigger("visible-a")
    for run_id in (secret_run, visible_run, k.trigger("secret-dag")):
        k.wait_run(run_id)
    policies = {
        "viewer": [{"Effect": "Allow", "Action": VIEWER, "Resource": "dag/visible-*"}],
        # Everything on every DAG and run, but a Deny on the hidden one and its runs.
        "all-but-secret": [
            {"Effect": "Allow", "Action": ["dags:*", "runs:*", "logs:Read"], "Resource": "dag/*"},
            {"Effect": "Deny", "Action": "*", "Resource": "dag/secret-*"},
        ],
    }
    for name, statements in policies.items():
        body = {"policy": name, "document": {"Statement": statements}}
        assert k.api("POST", "/api/v1/iam/policies", json=body).status_code == 201
    for user, policy in (("eve", "viewer"), ("dana", "all-but-secret")):
        body = {"user": user, "password": PW, "policies": [policy]}
        assert k.api("POST", "/api/v1/iam/users", json=body).status_code == 201
    yield World(k, secret_run, visible_run)


@pytest.mark.parametrize("who", ["eve", "dana"])
def test_every_route_answers_a_hidden_dag_or_run_like_one_that_does_not_exist(world: World, who: str) -> None:
    """No 403/404 oracle, nothing of the hidden DAG in an answer: each route with a path
    parameter, called for the hidden DAG (its run, its task) and for a DAG that was never
    registered but that the same policies cover, must give the same status and, ids aside,
    the same body."""
    headers = world.eve if who == "eve" else world.dana
    ghost_run = world.secret_run.replace("secret-dag", "secret-ghost")
    hidden = {"dag_id": "secret-dag", "run_id": world.secret_run, "task_id": "secret-task"}
    absent = {"dag_id": "secret-ghost", "run_id": ghost_run, "task_id": "secret-task"}
    other = {"version": "1", "connection_id": "nope", "name": "nope", "key_id": "nope"}
    other |= {"worker_id": "nope", "backup_id": "nope"}
    checked = 0
    for method, template in _routes():
        names = re.findall(r"{(\w+)}", template)
        if not set(names) & set(hidden):
            continue
        body: dict[str, Any] = {"json": {}} if method in ("POST", "PUT") else {}
        for query in ("", "?since=1"):
            if query and method != "GET":
                continue
            r1 = _call(world.k, headers, method, template.format(**other, **hidden) + query, **body)
            r2 = _call(world.k, headers, method, template.format(**other, **absent) + query, **body)
            normalized = r2.text.replace(ghost_run, world.secret_run).replace("secret-ghost", "secret-dag")
            where = f"{method} {template}{query}"
            assert r1.status_code in (403, 404), (where, r1.status_code, r1.text)
            assert (r1.status_code, r1.text) == (r2.status_code, normalized), where
            checked += 1
    assert checked >= 15


@pytest.mark.parametrize("who", ["eve", "dana"])
def test_lists_pages_dashboard_and_me_show_nothing_of_the_hidden_dag(world: World, who: str) -> None:
    headers = world.eve if who == "eve" else world.dana
    paths = [
        "/api/v1/dags?lastRuns=50",
        "/api/v1/runs?limit=500",
        "/api/v1/runs?dag=secret-dag",
        "/api/v1/runs?state=FAILED",
        "/api/v1/runs?dag=secret-dag&state=FAILED&since=2000-01-01",
        "/api/v1/dashboard?window=604800",
        "/api/v1/me",
        "/api/v1/dags/visible-a",
        "/api/v1/dags/visible-a/versions",
        "/api/v1/dags/visible-a/versions/1",
        f"/api/v1/runs/{world.visible_run}",
        f"/api/v1/runs/{world.visible_run}?since=1",
        f"/api/v1/runs/{world.visible_run}/tasks/__run__/log",
        "/api/v1/dags/visible-a/grid",
    ]
    for path in paths:
        r = _call(world.k, headers, "GET", path)
        assert r.status_code == 200 and not _leaks(r), (path, r.text)
    assert [d["dagId"] for d in _call(world.k, headers, "GET", "/api/v1/dags").json()["dags"]] == [
        "visible-a"
    ]
    dashboard = _call(world.k, headers, "GET", "/api/v1/dashboard?window=604800").json()
    assert sum(dashboard["counts"].values()) == 1 and dashboard["scanned"] == 1
    # Page by page: the cursor never lands on, or skips through, a hidden run.
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = _call(world.k, headers, "GET", "/api/v1/runs", params=params).json()
        seen += [r["runId"] for r in page["runs"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [world.visible_run]


def test_the_grid_takes_no_run_of_another_dag_and_shows_nothing_of_a_hidden_one(world: World) -> None:
    # A hidden run addressed under a visible DAG's path is not that DAG's run.
    r = world.eve_get(f"/api/v1/dags/visible-a/grid?runs={world.secret_run},{world.visible_run}")
    assert r.status_code == 200 and not _leaks(r), r.text
    assert [run["runId"] for run in r.json()["runs"]] == [world.visible_run]
    for query in (f"?runs={world.secret_run}", "?cursor=999999", "?limit=1"):
        hidden = world.eve_get(f"/api/v1/dags/secret-dag/grid{query}")
        absent = world.eve_get(f"/api/v1/dags/ghost-dag/grid{query.replace('secret-dag', 'ghost-dag')}")
        assert hidden.status_code == absent.status_code, query
        if hidden.status_code == 200:
            assert hidden.json()["runs"] == [] and hidden.json()["tasks"] == [], hidden.text


def test_path_case_unicode_and_traversal_variants_do_not_reach_the_hidden_dag(world: World) -> None:
    secret = world.secret_run
    variants = [
        "/api/v1/dags/visible-a%2F..%2Fsecret-dag",
        "/api/v1/dags/visible-a%2F..%2Fsecret-dag/grid",
        "/api/v1/dags/visible-a/..%2Fsecret-dag/versions",
        "/api/v1/dags/visible-%2A",
        f"/api/v1/runs/visible-a-1-1%2F..%2F{secret}",
        f"/api/v1/runs/visible-a-{secret}",
        f"/api/v1/runs/{secret.upper()}",
        f"/api/v1/runs/{secret.replace('secret', 'ｓecret')}",
        f"/api/v1/runs/{secret}%00",
        f"/api/v1/runs/{world.visible_run}/tasks/..%2F..%2F{secret}%2Ftasks%2Fsecret-task/log",
        f"/api/v1/runs/{world.visible_run}/tasks/secret-task/log",
        "/api/v1/runs?dag=visible-a/../secret-dag",
        "/api/v1/runs?dag=visible-*",
        f"/api/v1/dags/visible-a/grid?runs=visible-a/../{secret}",
        f"/api/v1/dags/SECRET-DAG/grid?runs={secret.upper()}",
    ]
    for path in variants:
        r = httpx.get(world.k.url + path, headers=world.eve, timeout=30)
        assert not _leaks(r, path), (path, r.status_code, r.text)
        if r.status_code == 200 and "runs" in r.json():
            assert all(run["runId"] == world.visible_run for run in r.json()["runs"]), path


def test_metrics_cluster_audit_and_connections_are_cluster_or_connection_grants(world: World) -> None:
    """Metrics carry every DAG's id as a label: ``cluster:Metrics`` on ``cluster`` only."""
    for path, action, resource in (
        ("/metrics", "cluster:Metrics", "cluster"),
        ("/api/v1/cluster", "cluster:Read", "cluster"),
        ("/api/v1/admin/audit", "audit:Read", "cluster"),
        ("/api/v1/admin/workers", "cluster:ListWorkers", "cluster"),
        ("/api/v1/connections", "connections:Read", "any resource"),
        ("/api/v1/connections/secret-conn", "connections:Read", "connection/secret-conn"),
    ):
        r = world.eve_get(path)
        assert r.status_code == 403 and f"{action} on {resource}" in r.json()["error"]["message"], path


def test_trigger_is_granted_on_the_visible_dags_only(world: World) -> None:
    k = world.k
    r = _call(k, world.eve, "POST", "/api/v1/dags/visible-a/runs", json={})
    assert r.status_code == 201, r.text
    run_id = r.json()["runId"]
    assert world.eve_get(f"/api/v1/runs/{run_id}").status_code == 200
    assert k.api("DELETE", f"/api/v1/runs/{k.wait_run(run_id)['runId']}").status_code == 200
    for path in ("/api/v1/dags/secret-dag/runs", "/api/v1/dags/secret-dag/backfill"):
        r = _call(k, world.eve, "POST", path, json={"from": "2026-01-01", "to": "2026-01-02"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text


@pytest.mark.parametrize(
    "action", ["runs:Trigger", "dags:delete", "Dags:List", "dag:*", "logs:List", "iam:Reed"]
)
def test_a_policy_action_that_names_no_kiok_action_is_refused(world: World, action: str) -> None:
    """A misspelt action matched nothing: harmless in an Allow, but a misspelt Deny silently
    denied nothing. Such a document is refused, naming the action."""
    for effect in ("Allow", "Deny"):
        doc = {"Statement": [{"Effect": effect, "Action": ["dags:List", action], "Resource": "dag/x"}]}
        r = world.k.api("POST", "/api/v1/iam/policies", json={"policy": "typo", "document": doc})
        assert r.status_code == 400 and repr(action) in r.json()["error"]["message"], r.text


def test_action_patterns_that_match_some_action_are_accepted(world: World) -> None:
    for action in ("*", "dags:*", "*:Read", "runs:Re?d", "iam:*AccessKey*", "auth:ChangePassword"):
        doc = {"Statement": [{"Effect": "Deny", "Action": action, "Resource": "dag/x"}]}
        r = world.k.api("POST", "/api/v1/iam/policies", json={"policy": "patterns", "document": doc})
        assert r.status_code == 201, (action, r.text)
