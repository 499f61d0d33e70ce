"""The API the admin UI's dashboard, DAG list, register and settings pages read, against a
real standalone: ``/me`` (what the caller may do), ``/dashboard``, the DAG list's
``nextFireAt`` and ``lastRuns``, and a refused DAG's ``errors`` with field path and line."""

from __future__ import annotations

from typing import Any

import httpx

from kiok.testing.process import Standalone

PW = "Ui-Support-Password-123"
SCHEDULED = """dag: {id: ui_sched, schedule: '30 2 * * *', timezone: Europe/Berlin}
tasks:
  - {id: a, script: 'echo a'}
"""
FAILING = """dag: {id: ui_fail}
tasks:
  - {id: ok, script: 'echo ok'}
  - {id: boom, requires: [ok], script: 'exit 4'}
"""


def login(k: Standalone, user: str) -> dict[str, str]:
    r = httpx.post(k.url + "/api/v1/auth/login", json={"user": user, "password": PW}, timeout=30)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['accessToken']}"}


def test_me_says_what_the_caller_may_do(shared_kiok: Standalone) -> None:
    k = shared_kiok
    admin: dict[str, Any] = k.api("GET", "/api/v1/me").json()
    assert admin["user"] == "admin"
    assert admin["allowed"]["dags:Register"] is True
    assert admin["allowed"]["kms:Rotate"] is True
    policy = {"Statement": [{"Effect": "Allow", "Action": ["dags:List", "runs:List"], "Resource": "*"}]}
    assert (
        k.api("POST", "/api/v1/iam/policies", json={"policy": "ui-ro", "document": policy}).status_code == 201
    )
    body = {"user": "ui-ro-user", "password": PW, "policies": ["ui-ro"]}
    assert k.api("POST", "/api/v1/iam/users", json=body).status_code == 201
    me = httpx.get(k.url + "/api/v1/me", headers=login(k, "ui-ro-user"), timeout=30).json()
    assert me["user"] == "ui-ro-user"
    assert me["allowed"]["dags:List"] is True
    assert me["allowed"]["dags:Register"] is False
    assert me["allowed"]["dags:Trigger"] is False
    assert me["allowed"]["iam:Read"] is False
    assert me["allowed"]["kms:List"] is False
    assert httpx.get(k.url + "/api/v1/me", timeout=30).status_code == 401


def test_dashboard_counts_series_and_failed_runs(shared_kiok: Standalone) -> None:
    k = shared_kiok
    k.register(FAILING)
    run_id = k.trigger("ui_fail")
    assert k.wait_run(run_id)["state"] == "FAILED"
    r = k.api("GET", "/api/v1/dashboard?window=600&buckets=10")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["counts"]["FAILED"] >= 1
    assert len(d["series"]) == 10 and d["bucketSeconds"] == 60
    assert sum(b["runs"] for b in d["series"]) >= 1
    assert sum(b["tasks"] for b in d["series"]) >= 2  # ok and boom finished in the window
    failed = [f for f in d["failed"] if f["runId"] == run_id]
    assert failed and failed[0]["dagId"] == "ui_fail" and failed[0]["tasks"] == 2
    assert k.api("GET", "/api/v1/dashboard?window=5").status_code == 400
    # A user who may list no runs is refused.
    nobody = {"user": "ui-dash-nobody", "password": PW, "policies": []}
    assert k.api("POST", "/api/v1/iam/users", json=nobody).status_code == 201
    refused = httpx.get(k.url + "/api/v1/dashboard", headers=login(k, "ui-dash-nobody"), timeout=30)
    assert refused.status_code == 403


def test_dag_list_has_next_fire_time_and_last_runs(shared_kiok: Standalone) -> None:
    k = shared_kiok
    k.register(SCHEDULED)
    k.register(FAILING)
    run_id = k.trigger("ui_fail")
    k.wait_run(run_id)
    dags = {d["dagId"]: d for d in k.api("GET", "/api/v1/dags?lastRuns=3").json()["dags"]}
    nxt = dags["ui_sched"]["nextFireAt"]
    assert nxt is not None and nxt.endswith(("T00:30:00.000Z", "T01:30:00.000Z"))  # 02:30 Berlin
    assert dags["ui_fail"]["nextFireAt"] is None
    # The DAG's own page says it too (it did not: only the list did).
    assert k.api("GET", "/api/v1/dags/ui_sched").json()["nextFireAt"] == nxt
    last = dags["ui_fail"]["lastRuns"]
    assert 1 <= len(last) <= 3 and last[0]["runId"] == run_id and last[0]["state"] == "FAILED"
    assert "lastRuns" not in k.api("GET", "/api/v1/dags").json()["dags"][0]
    assert k.api("POST", "/api/v1/dags/ui_sched/pause").status_code == 200
    paused = {d["dagId"]: d for d in k.api("GET", "/api/v1/dags").json()["dags"]}
    assert paused["ui_sched"]["nextFireAt"] is None


def test_refused_dag_names_field_and_line(shared_kiok: Standalone) -> None:
    k = shared_kiok
    bad = (
        "dag:\n  id: ui_bad\ntasks:\n  - id: a\n    script: echo\n  - id: b\n    retries: -1\n    script: x\n"
    )
    r = k.api("POST", "/api/v1/dags", content=bad, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 400
    assert r.json()["errors"] == [
        {"path": "tasks[1].retries", "line": 7, "message": "must be an int from 0 to 100, got -1"}
    ]
    # A value past the limits (checked over the whole document first) has its path and line
    # too (both were null), and the first such value in document order is the one named.
    huge = (
        "dag: {id: ui_bad}\ntasks:\n  - {id: a, retries: .inf}\n  - {id: b, retries: 99999999999999999999}\n"
    )
    r = k.api("POST", "/api/v1/dags", content=huge, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 400
    assert r.json()["errors"] == [
        {"path": "tasks[0].retries", "line": 3, "message": "NaN and infinity are not valid values"}
    ]
    broken = "dag:\n  id: x\n tasks: [\n"
    r = k.api("POST", "/api/v1/dags", content=broken, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 400
    assert r.json()["errors"][0]["line"] == 3 and r.json()["errors"][0]["path"] is None
    as_json = '{"dag": {"id": "ui_bad"},\n "tasks": [\n  {"id": "a", "script": 5}]}'
    r = k.api("POST", "/api/v1/dags", content=as_json, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["errors"][0]["path"] == "tasks[0].script" and r.json()["errors"][0]["line"] == 3
