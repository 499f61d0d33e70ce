"""Requests a signed-in user with narrow rights could make the master pay for without bound,
against a real standalone with small limits. Each test is an attack that worked before:

- listing the runs of a DAG the caller may not see (or every run, or the dashboard) read the
  whole history on the event loop: 200,000 runs of another DAG took 5 s per request, with
  the scheduler, Raft and the worker links stalled meanwhile;
- a user who may do nothing else could create access keys without end (a Raft entry and an
  IAM record each, kept for good);
- a user who may trigger one DAG could queue runs of it without end (a backfill queues 1000
  in one request): 22,000 pending runs took 20 backfills (40 s), then every dispatch pass
  read them all, /healthz took up to 7 s and 0.27 s on average for as long as they drained.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from kiok.testing.process import Standalone

PW = "Hostile-Load-Password-1"
SCAN_LIMIT = 3
MAX_KEYS = 2
MAX_PENDING = 3


@pytest.fixture(scope="module")
def k(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(
        tmp_path_factory.mktemp("hostile-load") / "kiok",
        {
            "KIOK_ADMIN_HTTP_LIST_SCAN_LIMIT": str(SCAN_LIMIT),
            "KIOK_IAM_ACCESS_KEYS_MAX_PER_USER": str(MAX_KEYS),
            "KIOK_SCHEDULER_MAX_PENDING_RUNS_PER_DAG": str(MAX_PENDING),
        },
    )
    node.start()
    for dag in ("mine", "other"):
        node.register(f"dag: {{id: {dag}, max_active_runs: 20}}\ntasks: [{{id: a, script: 'true'}}]\n")
    node.trigger("mine")
    for _ in range(2 * SCAN_LIMIT):
        node.trigger("other")
    document = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["runs:List", "runs:Read", "dags:Read", "dags:List"],
                "Resource": ["dag/mine", "dag/mine/*"],
            }
        ]
    }
    r = node.api("POST", "/api/v1/iam/policies", json={"policy": "mine", "document": document})
    assert r.status_code == 201, r.text
    r = node.api("POST", "/api/v1/iam/users", json={"user": "eve", "password": PW, "policies": ["mine"]})
    assert r.status_code == 201, r.text
    yield node
    node.stop()


@pytest.fixture(scope="module")
def eve(k: Standalone) -> dict[str, str]:
    r = httpx.post(k.url + "/api/v1/auth/login", json={"user": "eve", "password": PW})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['accessToken']}"}


def get(k: Standalone, headers: dict[str, str], path: str, **params: str | int) -> httpx.Response:
    return httpx.get(k.url + path, headers=headers, params=params, timeout=30)


def test_runs_the_caller_cannot_see_are_read_at_most_the_scan_limit_per_page(
    k: Standalone, eve: dict[str, str]
) -> None:
    # A DAG none of whose runs the caller may list: an empty page at once, as for a DAG
    # without runs (no scan: neither its time nor a cursor tells its history's length).
    for dag in ("other", "no-such-dag"):
        r = get(k, eve, "/api/v1/runs", dag=dag, limit=50)
        assert r.status_code == 200, r.text
        assert r.json() == {"runs": [], "nextCursor": None}

    # Paging on still reaches every run the caller may see.
    found: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, str | int] = {"limit": 50}
        if cursor:
            params["cursor"] = cursor
        r = get(k, eve, "/api/v1/runs", **params)
        assert r.status_code == 200, r.text
        found += [run["dagId"] for run in r.json()["runs"]]
        cursor = r.json()["nextCursor"]
        if cursor is None:
            break
    assert found == ["mine"]


def test_the_dashboard_of_a_caller_who_sees_few_runs_is_truncated_not_unbounded(
    k: Standalone, eve: dict[str, str]
) -> None:
    r = get(k, eve, "/api/v1/dashboard")
    assert r.status_code == 200, r.text
    assert r.json()["truncated"] is True


def test_the_grid_of_a_dag_the_caller_cannot_see_is_still_a_404(k: Standalone, eve: dict[str, str]) -> None:
    for params in ({}, {"cursor": "999999"}, {"runs": "other-1-1"}):
        r = get(k, eve, "/api/v1/dags/other/grid", **params)
        missing = get(k, eve, "/api/v1/dags/no-such-dag/grid", **params)
        assert (r.status_code, missing.status_code) == (404, 404), r.text
        said = r.json()["error"]["message"].replace("other", "no-such-dag")
        assert said == missing.json()["error"]["message"]
    r = get(k, eve, "/api/v1/dags/mine/grid")
    assert r.status_code == 200, r.text
    assert len(r.json()["runs"]) == 1


def test_a_user_holds_at_most_the_configured_number_of_access_keys(
    k: Standalone, eve: dict[str, str]
) -> None:
    made = []
    for _ in range(MAX_KEYS):
        r = httpx.post(k.url + "/api/v1/iam/access-keys", headers=eve, json={"password": PW})
        assert r.status_code == 201, r.text
        made.append(r.json()["accessKeyId"])
    r = httpx.post(k.url + "/api/v1/iam/access-keys", headers=eve, json={"password": PW})
    assert r.status_code == 409, r.text
    assert "kiok.iam.access.keys.max.per.user" in r.json()["error"]["message"]
    r = k.api("POST", "/api/v1/iam/access-keys", json={"user": "eve"})  # the admin, for eve
    assert r.status_code == 409, r.text
    r = get(k, eve, "/api/v1/iam/access-keys")
    assert sorted(a["accessKeyId"] for a in r.json()["accessKeys"]) == sorted(made)

    r = httpx.delete(k.url + f"/api/v1/iam/access-keys/{made[0]}", headers=eve)
    assert r.status_code == 200, r.text
    r = httpx.post(k.url + "/api/v1/iam/access-keys", headers=eve, json={"password": PW})
    assert r.status_code == 201, r.text


def test_a_dag_queues_at_most_the_configured_number_of_pending_runs(k: Standalone) -> None:
    k.register("dag: {id: held, max_active_runs: 1}\ntasks: [{id: a, script: 'sleep 60'}]\n")
    made: list[str] = []
    refused = None
    for _ in range(MAX_PENDING + 3):
        r = k.api("POST", "/api/v1/dags/held/runs", json={})
        if r.status_code != 201:
            refused = r
            break
        made.append(r.json()["runId"])
    assert refused is not None and refused.status_code == 409, refused and refused.text
    assert "kiok.scheduler.max.pending.runs.per.dag" in refused.json()["error"]["message"]
    # One of them may have started meanwhile: it no longer counts.
    assert MAX_PENDING <= len(made) <= MAX_PENDING + 1
    for run_id in made:
        k.api("POST", f"/api/v1/runs/{run_id}/cancel")


def test_a_rerun_is_a_pending_run_of_its_dag_too(k: Standalone) -> None:
    """A re-run is queued like a new run: re-running a finished run of a DAG whose pending
    runs are at the limit is refused as a trigger would be (it used to bypass the quota)."""
    k.register(
        "dag: {id: rerun_quota, max_active_runs: 1, params: {long: 'no'}}\n"
        "tasks: [{id: a, script: 'if [ ${params.long} = yes ]; then sleep 60; fi'}]\n"
    )
    finished = k.trigger("rerun_quota")
    assert k.wait_run(finished)["state"] == "SUCCESS"
    holder = k.trigger("rerun_quota", {"long": "yes"})
    k.wait_for(lambda: k.run(holder)["state"] == "RUNNING", 30, "the long run")
    queued = [k.trigger("rerun_quota") for _ in range(MAX_PENDING)]  # behind it
    r = k.api("POST", f"/api/v1/runs/{finished}/rerun", json={"onlyFailed": False})
    assert r.status_code == 409, r.text
    assert "kiok.scheduler.max.pending.runs.per.dag" in r.json()["error"]["message"]
    assert k.run(finished)["state"] == "SUCCESS"
    k.api("POST", f"/api/v1/runs/{queued[0]}/cancel")
    r = k.api("POST", f"/api/v1/runs/{finished}/rerun", json={"onlyFailed": False})
    assert r.status_code == 200 and r.json()["state"] == "PENDING", r.text
    for run_id in (holder, *queued, finished):
        k.api("POST", f"/api/v1/runs/{run_id}/cancel")


def test_a_backfill_past_the_pending_limit_is_refused_and_creates_nothing(k: Standalone) -> None:
    k.register(
        "dag: {id: hourly, schedule: '0 * * * *', max_active_runs: 1}\ntasks: [{id: a, script: 'sleep 60'}]\n"
    )
    r = k.api(
        "POST",
        "/api/v1/dags/hourly/backfill",
        json={"from": "2025-01-01T00:00:00Z", "to": "2025-01-01T09:00:00Z"},
    )
    assert r.status_code == 409, r.text
    assert "kiok.scheduler.max.pending.runs.per.dag" in r.json()["error"]["message"]
    r = k.api("GET", "/api/v1/runs", params={"dag": "hourly"})
    assert r.json()["runs"] == []
    r = k.api(
        "POST",
        "/api/v1/dags/hourly/backfill",
        json={"from": "2025-01-01T00:00:00Z", "to": "2025-01-01T01:00:00Z"},
    )
    assert r.status_code == 201, r.text
    assert len(r.json()["created"]) == 2
    # The same range again creates nothing, so it is not refused.
    r = k.api(
        "POST",
        "/api/v1/dags/hourly/backfill",
        json={"from": "2025-01-01T00:00:00Z", "to": "2025-01-01T01:00:00Z"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["created"] == []
    for run in k.api("GET", "/api/v1/runs", params={"dag": "hourly"}).json()["runs"]:
        k.api("POST", f"/api/v1/runs/{run['runId']}/cancel")
