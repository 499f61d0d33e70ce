"""``GET /api/v1/dags/{dagId}/grid`` against a real standalone: topological task order,
one state letter per task, attempts, paging by runs and by tasks, re-reading chosen runs,
and only the runs the caller may read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from kiok.master.api.grid import CACHED_HEADER
from kiok.testing.process import Standalone

PW = "Grid-Password-12345"
# Declared out of order: the grid lists upstreams first.
GRID_DAG = """dag: {id: grid_demo}
tasks:
  - {id: report, requires: [load], script: 'echo report'}
  - {id: load, requires: [extract], script: 'exit 3'}
  - {id: extract, script: 'echo extract'}
  - {id: flaky, retries: 1, retry_delay: 10ms, script: 'test "$KIOK_ATTEMPT" -ge 2'}
"""


def grid(k: Standalone, query: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
    if headers is None:
        return k.api("GET", f"/api/v1/dags/grid_demo/grid{query}")
    return httpx.get(k.url + f"/api/v1/dags/grid_demo/grid{query}", headers=headers, timeout=30)


@pytest.fixture(scope="module")
def runs(shared_kiok: Standalone) -> list[str]:
    k = shared_kiok
    k.register(GRID_DAG)
    ids = []
    for _ in range(3):
        run_id = k.trigger("grid_demo")
        k.wait_run(run_id)
        ids.append(run_id)
    return ids


def test_grid_rows_are_tasks_in_topological_order_with_state_letters(
    shared_kiok: Standalone, runs: list[str]
) -> None:
    r = grid(shared_kiok)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["tasks"] == ["extract", "flaky", "load", "report"]
    assert body["totalTasks"] == 4
    assert [run["runId"] for run in body["runs"]] == runs[::-1]  # newest first
    assert body["codes"]["S"] == "SUCCESS" and body["codes"]["F"] == "FAILED"
    oldest = body["runs"][-1]
    assert oldest["state"] == "FAILED"
    # extract ok, flaky ok on its second attempt, load failed, report skipped.
    assert oldest["cells"] == "SSFK"
    assert oldest["attempts"] == [[1, 2]]
    assert oldest["durationsMs"][0] is not None and oldest["durationsMs"][3] is None
    worker = oldest["workerIndex"][0]
    assert isinstance(worker, int) and oldest["workers"][worker].startswith("worker-")
    assert body["nextCursor"] is None


def test_grid_pages_by_runs_and_tasks_and_rereads_chosen_runs(
    shared_kiok: Standalone, runs: list[str]
) -> None:
    first = grid(shared_kiok, "?limit=2").json()
    assert [run["runId"] for run in first["runs"]] == [runs[2], runs[1]]
    assert first["nextCursor"] is not None
    rest = grid(shared_kiok, f"?limit=2&cursor={first['nextCursor']}").json()
    assert [run["runId"] for run in rest["runs"]] == [runs[0]] and rest["nextCursor"] is None
    part = grid(shared_kiok, "?taskOffset=2&taskLimit=1").json()
    assert part["tasks"] == ["load"] and part["totalTasks"] == 4 and part["taskOffset"] == 2
    assert all(run["cells"] == "F" for run in part["runs"])
    chosen = grid(shared_kiok, f"?runs={runs[0]},nope-1-1,{runs[2]}").json()
    assert {run["runId"] for run in chosen["runs"]} == {runs[0], runs[2]}
    assert grid(shared_kiok, "?cursor=x").status_code == 400
    missing = shared_kiok.api("GET", "/api/v1/dags/no_such_dag/grid")
    assert missing.status_code == 404


def test_grid_shows_only_runs_the_caller_may_read(shared_kiok: Standalone, runs: list[str]) -> None:
    k = shared_kiok
    one = runs[1]
    policy = {
        "Statement": [
            {"Effect": "Allow", "Action": "runs:Read", "Resource": f"dag/grid_demo/run/{one}"},
        ]
    }
    assert (
        k.api("POST", "/api/v1/iam/policies", json={"policy": "grid-one", "document": policy}).status_code
        == 201
    )
    body = {"user": "grid-reader", "password": PW, "policies": ["grid-one"]}
    assert k.api("POST", "/api/v1/iam/users", json=body).status_code == 201
    login = httpx.post(k.url + "/api/v1/auth/login", json={"user": "grid-reader", "password": PW})
    headers = {"Authorization": f"Bearer {login.json()['accessToken']}"}
    seen = grid(k, headers=headers)
    assert seen.status_code == 200, seen.text
    assert [run["runId"] for run in seen.json()["runs"]] == [one]
    assert seen.json()["tasks"] == ["extract", "flaky", "load", "report"]
    # A DAG it can see nothing of: 404 whether it exists or not.
    other = httpx.get(k.url + "/api/v1/dags/other_dag/grid", headers=headers, timeout=30)
    assert other.status_code == 404
    # Re-reading chosen runs, or a later page, is no way round that: 404 as well.
    k.register("dag: {id: grid_hidden}\ntasks: [{id: a, script: 'true'}]\n")
    hidden = k.trigger("grid_hidden")
    k.wait_run(hidden)
    for dag_id in ("grid_hidden", "other_dag"):
        for query in (f"?runs={hidden}", "?runs=x", "?cursor=0", "?cursor=99999999"):
            r = httpx.get(k.url + f"/api/v1/dags/{dag_id}/grid{query}", headers=headers, timeout=30)
            assert r.status_code == 404, (dag_id, query, r.text)
            assert r.json()["error"]["message"] == f"DAG {dag_id!r} not found", r.text
    # Where it may read a run, those parameters answer as before (even with nothing in them).
    assert grid(k, f"?runs={one}", headers=headers).json()["runs"][0]["runId"] == one
    assert grid(k, "?runs=nope-1-1", headers=headers).json()["runs"] == []
    assert grid(k, "?cursor=0", headers=headers).json()["runs"] == []
    nobody = {"user": "grid-nobody", "password": PW, "policies": []}
    assert k.api("POST", "/api/v1/iam/users", json=nobody).status_code == 201
    login = httpx.post(k.url + "/api/v1/auth/login", json={"user": "grid-nobody", "password": PW})
    refused = grid(k, headers={"Authorization": f"Bearer {login.json()['accessToken']}"})
    assert refused.status_code == 403


def test_a_readable_run_beyond_the_scan_limit_is_reached_by_paging(standalone_factory: Any) -> None:
    """A caller who may read only an old run of a DAG it has no ``dags:Read`` on: the first
    pages read their scan limit of runs it may not see. They answer as the run list does, an
    empty page with a cursor (not a 404: the DAG may still show something), and paging reaches
    the run; a DAG with fewer runs than the limit, none readable, stays a 404."""
    k: Standalone = standalone_factory(env={"KIOK_ADMIN_HTTP_LIST_SCAN_LIMIT": "2"})
    k.register("dag: {id: deep}\ntasks: [{id: a, script: 'true'}]\n")
    k.register("dag: {id: shallow}\ntasks: [{id: a, script: 'true'}]\n")
    ids = []
    for _ in range(6):
        ids.append(k.trigger("deep"))
        k.wait_run(ids[-1])
    k.wait_run(k.trigger("shallow"))
    policy = {
        "Statement": [
            {"Effect": "Allow", "Action": "runs:Read", "Resource": f"dag/deep/run/{ids[0]}"},
            {"Effect": "Allow", "Action": "runs:Read", "Resource": "dag/shallow/run/none"},
        ]
    }
    assert (
        k.api("POST", "/api/v1/iam/policies", json={"policy": "old", "document": policy}).status_code == 201
    )
    assert (
        k.api(
            "POST", "/api/v1/iam/users", json={"user": "old", "password": PW, "policies": ["old"]}
        ).status_code
        == 201
    )
    login = httpx.post(k.url + "/api/v1/auth/login", json={"user": "old", "password": PW})
    headers = {"Authorization": f"Bearer {login.json()['accessToken']}"}

    def page(dag_id: str, query: str = "") -> httpx.Response:
        return httpx.get(k.url + f"/api/v1/dags/{dag_id}/grid{query}", headers=headers, timeout=30)

    first = page("deep")
    assert first.status_code == 200, first.text
    assert first.json()["runs"] == [] and first.json()["nextCursor"] is not None
    seen: list[str] = []
    cursor = first.json()["nextCursor"]
    for _ in range(len(ids)):
        if cursor is None:
            break
        body = page("deep", f"?cursor={cursor}").json()
        seen += [run["runId"] for run in body["runs"]]
        cursor = body["nextCursor"]
    assert seen == [ids[0]]
    assert page("deep", f"?runs={ids[1]}").json()["runs"] == []
    for query in ("", f"?runs={ids[0]}", "?cursor=99"):
        assert page("shallow", query).status_code == 404, query


def test_grid_is_in_the_openapi_document(shared_kiok: Standalone) -> None:
    doc = shared_kiok.api("GET", "/api/v1/openapi.json").json()
    params = {p["name"] for p in doc["paths"]["/api/v1/dags/{dag_id}/grid"]["get"]["parameters"]}
    assert {"limit", "cursor", "runs", "taskOffset", "taskLimit"} <= params


def test_finished_columns_come_from_the_cache_and_follow_rerun_and_delete(
    shared_kiok: Standalone, task_tmp_path: Path
) -> None:
    """A finished run's column is served from the cache on the next read, and is rebuilt
    when the run is re-run (its version changes) or gone when it is deleted."""
    k = shared_kiok
    marker = task_tmp_path / "fixed"
    k.register(
        "dag: {id: grid_cache}\ntasks:\n"
        "  - {id: a, script: 'true'}\n"
        f"  - {{id: b, requires: [a], script: 'test -e {marker}'}}\n"
    )
    kept, gone = k.trigger("grid_cache"), k.trigger("grid_cache")
    for run_id in (kept, gone):
        assert k.wait_run(run_id)["state"] == "FAILED"

    def read() -> tuple[dict[str, Any], str]:
        r = k.api("GET", "/api/v1/dags/grid_cache/grid")
        assert r.status_code == 200, r.text
        return r.json(), r.headers[CACHED_HEADER]

    first, _ = read()
    again, cached = read()
    assert cached == "2/2" and again == first
    assert [run["cells"] for run in again["runs"]] == ["SF", "SF"]

    # Re-run the failed task of the older run, which now succeeds: its column is rebuilt.
    marker.touch()
    assert k.api("POST", f"/api/v1/runs/{kept}/rerun", json={"onlyFailed": True}).status_code == 200
    assert k.wait_run(kept)["state"] == "SUCCESS"
    after, cached = read()
    assert cached == "1/2"
    by_id = {run["runId"]: run for run in after["runs"]}
    assert by_id[kept]["cells"] == "SS" and by_id[kept]["attempts"] == [[1, 2]]
    assert by_id[gone]["cells"] == "SF"
    assert read()[1] == "2/2"

    # Deleted: gone from the page and from a re-read by id.
    assert k.api("DELETE", f"/api/v1/runs/{gone}").status_code == 200
    after, cached = read()
    assert [run["runId"] for run in after["runs"]] == [kept] and cached == "1/1"
    chosen = k.api("GET", f"/api/v1/dags/grid_cache/grid?runs={gone},{kept}")
    assert [run["runId"] for run in chosen.json()["runs"]] == [kept]
