"""The DAG list's ``lastRuns`` against a real standalone: the lists it keeps between
requests follow runs being created, finishing and deleted, and a Deny on one run hides it."""

from __future__ import annotations

import time
from typing import Any

import httpx

from kiok.testing.process import Standalone

PW = "Dag-List-Recent-Password-123"
DAG = """dag: {id: recent_list}
tasks:
  - {id: a, script: 'echo a'}
"""


def last_runs(k: Standalone, n: int, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    if headers is None:
        r = k.api("GET", f"/api/v1/dags?lastRuns={n}")
    else:
        r = httpx.get(k.url + f"/api/v1/dags?lastRuns={n}", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return next(d for d in r.json()["dags"] if d["dagId"] == "recent_list")["lastRuns"]  # type: ignore[no-any-return]


def test_last_runs_follow_runs_created_finished_and_deleted(shared_kiok: Standalone) -> None:
    k = shared_kiok
    k.register(DAG)
    assert last_runs(k, 3) == []
    first = k.trigger("recent_list")
    assert last_runs(k, 3)[0]["runId"] == first  # read right after the trigger: not a kept list
    k.wait_run(first)
    deadline = time.monotonic() + 30
    while last_runs(k, 3)[0]["state"] != "SUCCESS":  # effects land just after the answer
        assert time.monotonic() < deadline
    done = last_runs(k, 3)[0]
    assert done["endedAt"] is not None and done["startedAt"] is not None
    second = k.trigger("recent_list")
    assert [r["runId"] for r in last_runs(k, 3)] == [second, first]
    assert [r["runId"] for r in last_runs(k, 1)] == [second]
    k.wait_run(second)
    deadline = time.monotonic() + 30
    while last_runs(k, 3)[0]["state"] != "SUCCESS":
        assert time.monotonic() < deadline

    # one of its runs denied to a user: hidden from that user only
    policy = {
        "Statement": [
            {"Effect": "Allow", "Action": ["dags:List", "runs:List"], "Resource": "*"},
            {"Effect": "Deny", "Action": ["runs:List"], "Resource": f"dag/recent_list/run/{first}"},
        ]
    }
    assert (
        k.api("POST", "/api/v1/iam/policies", json={"policy": "recent-ro", "document": policy}).status_code
        == 201
    )
    body = {"user": "recent-ro-user", "password": PW, "policies": ["recent-ro"]}
    assert k.api("POST", "/api/v1/iam/users", json=body).status_code == 201
    r = httpx.post(k.url + "/api/v1/auth/login", json={"user": "recent-ro-user", "password": PW}, timeout=30)
    ro = {"Authorization": f"Bearer {r.json()['accessToken']}"}
    assert [r["runId"] for r in last_runs(k, 3, ro)] == [second]
    assert [r["runId"] for r in last_runs(k, 3)] == [second, first]

    assert k.api("DELETE", f"/api/v1/runs/{second}").status_code == 200
    assert [r["runId"] for r in last_runs(k, 3)] == [first]


def test_the_dag_list_follows_registrations_pauses_and_deletions(shared_kiok: Standalone) -> None:
    k = shared_kiok

    def listed() -> dict[str, dict[str, Any]]:
        r = k.api("GET", "/api/v1/dags")
        assert r.status_code == 200, r.text
        return {d["dagId"]: d for d in r.json()["dags"]}

    k.register("dag: {id: kept_view}\ntasks:\n  - {id: a, script: 'echo a'}\n")
    first = listed()["kept_view"]
    assert first["tasks"] == 1 and not first["paused"]
    assert listed()["kept_view"] == first  # kept between requests
    k.register("dag: {id: kept_view}\ntasks:\n  - {id: a, script: 'echo a'}\n  - {id: b, script: 'echo b'}\n")
    again = listed()["kept_view"]
    assert again["tasks"] == 2 and again["version"] == first["version"] + 1
    assert k.api("POST", "/api/v1/dags/kept_view/pause").status_code == 200
    assert listed()["kept_view"]["paused"]
    assert k.api("DELETE", "/api/v1/dags/kept_view").status_code == 200
    assert "kept_view" not in listed()
