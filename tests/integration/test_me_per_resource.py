"""``GET /api/v1/me?dag=…&run=…``: what a narrow policy allows on each named DAG and run,
exactly as the routes that take those actions decide (the UI offers Run, pause, Cancel,
Re-run and log links from it). Before, ``/me`` answered DAG and run actions only "on some
resource", so a user allowed to trigger one DAG was offered Run on every DAG."""

from __future__ import annotations

from typing import Any

import httpx

from kiok.testing.process import Standalone

PW = "Me-Per-Resource-Password-1"


def _setup(k: Standalone) -> tuple[httpx.Client, str, str]:
    """User ``me-narrow``: DAG ``mea`` hers to read, list, trigger and read runs and logs of;
    ``meb`` only its runs to read (logs and cancelling denied)."""
    for dag in ("mea", "meb"):
        k.register(f"dag: {{id: {dag}}}\ntasks: [{{id: t, script: 'echo hi'}}]\n")
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": ["dags:List", "dags:Read", "dags:Trigger"], "Resource": "dag/mea"},
        {"Effect": "Allow", "Action": ["runs:List", "logs:Read"], "Resource": "dag/mea/run/*"},
        {"Effect": "Allow", "Action": ["runs:Read", "runs:Cancel"], "Resource": "dag/me*"},
        {"Effect": "Deny", "Action": "runs:Cancel", "Resource": "dag/meb/run/*"},
    ]
    r = k.api(
        "POST", "/api/v1/iam/policies", json={"policy": "me-narrow", "document": {"Statement": statements}}
    )
    assert r.status_code == 201, r.text
    r = k.api(
        "POST", "/api/v1/iam/users", json={"user": "me-narrow", "password": PW, "policies": ["me-narrow"]}
    )
    assert r.status_code == 201, r.text
    token = httpx.post(
        k.url + "/api/v1/auth/login", json={"user": "me-narrow", "password": PW}, timeout=30
    ).json()["accessToken"]
    run_a, run_b = k.trigger("mea"), k.trigger("meb")
    k.wait_run(run_a)
    k.wait_run(run_b)
    client = httpx.Client(base_url=k.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return client, run_a, run_b


def test_me_answers_per_dag_and_per_run(shared_kiok: Standalone) -> None:
    k = shared_kiok
    client, run_a, run_b = _setup(k)
    with client as alice:
        r = alice.get("/api/v1/me", params=[("dag", "mea"), ("dag", "meb")])
        assert r.status_code == 200, r.text
        on = r.json()["allowedOn"]
        assert on["mea"] == {
            "dags:List": True,
            "dags:Read": True,
            "dags:Register": False,
            "dags:Delete": False,
            "dags:Pause": False,
            "dags:Trigger": True,
            "runs:List": True,
        }
        assert not any(on["meb"].values()), on["meb"]
        # "On some resource" still says yes: the per-DAG answer is what tells them apart.
        assert r.json()["allowed"]["dags:Trigger"] is True
        # The answers are the API's own decisions.
        assert alice.get("/api/v1/dags/mea").status_code == 200
        assert alice.get("/api/v1/dags/meb").status_code == 403
        assert alice.post("/api/v1/dags/meb/runs", json={"args": {}}).status_code == 403
        assert alice.post("/api/v1/dags/mea/pause").status_code == 403

        unknown = "mea-1-1"
        r = alice.get("/api/v1/me", params=[("run", run_a), ("run", run_b), ("run", unknown)])
        assert r.status_code == 200, r.text
        runs = r.json()["allowedOnRun"]
        assert "allowedOn" not in r.json()
        assert runs[run_a] == {
            "runs:Read": True,
            "runs:Cancel": True,
            "runs:Rerun": False,
            "runs:Delete": False,
            "logs:Read": True,
        }
        assert runs[run_b] == {
            "runs:Read": True,
            "runs:Cancel": False,
            "runs:Rerun": False,
            "runs:Delete": False,
            "logs:Read": False,
        }
        assert not any(runs[unknown].values())
        assert alice.get(f"/api/v1/runs/{run_b}").status_code == 200
        assert alice.get(f"/api/v1/runs/{run_a}/tasks/t/log").status_code == 200
        assert alice.get(f"/api/v1/runs/{run_b}/tasks/t/log").status_code == 403
        assert alice.post(f"/api/v1/runs/{run_b}/cancel").status_code == 403
        assert alice.get(f"/api/v1/runs/{unknown}").status_code == 404  # allowed there: not found

        # An admin is allowed everything on both.
        admin = k.api("GET", "/api/v1/me", params=[("dag", "meb"), ("run", run_b)]).json()
        assert all(admin["allowedOn"]["meb"].values()) and all(admin["allowedOnRun"][run_b].values())


def test_me_refuses_too_many_or_bad_ids(shared_kiok: Standalone) -> None:
    k = shared_kiok
    r = k.api("GET", "/api/v1/me", params=[("dag", f"d{i}") for i in range(201)])
    assert r.status_code == 400 and "at most 200" in r.json()["error"]["message"], r.text
    r = k.api("GET", "/api/v1/me", params=[("run", f"d-1-{i}") for i in range(201)])
    assert r.status_code == 400 and "at most 200" in r.json()["error"]["message"], r.text
    assert k.api("GET", "/api/v1/me", params=[("dag", f"d{i}") for i in range(200)]).status_code == 200
    r = k.api("GET", "/api/v1/me", params={"dag": "a/b"})
    assert r.status_code == 400 and "dag" in r.json()["error"]["message"], r.text
    r = k.api("GET", "/api/v1/me", params={"run": "no-run-id"})
    assert r.status_code == 400 and "run" in r.json()["error"]["message"], r.text
    plain = k.api("GET", "/api/v1/me").json()
    assert "allowedOn" not in plain and "allowedOnRun" not in plain
