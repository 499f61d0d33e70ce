"""``GET /api/v1/admin/audit`` with filters (actor, action or a prefix, outcome, time range)
against a real standalone, bad filters refused with a 400 naming them; and ``/api/v1/me``
answering the backup and access-key actions the settings pages offer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from kiok.testing.process import Standalone

PW = "Audit-Filter-Password-123"


def test_audit_filters(shared_kiok: Standalone) -> None:
    k = shared_kiok
    bad = httpx.post(k.url + "/api/v1/auth/login", json={"user": "nobody-here", "password": "x"}, timeout=30)
    assert bad.status_code == 401
    assert k.api(
        "POST", "/api/v1/connections", json={"connectionId": "aud", "properties": {"k": "v"}}
    ).is_success

    def entries(**params: str) -> list[dict[str, object]]:
        def got() -> list[dict[str, object]] | None:
            r = k.api("GET", "/api/v1/admin/audit", params=params)
            assert r.status_code == 200, r.text
            found: list[dict[str, object]] = r.json()["entries"]
            return found or None  # records are written shortly after the request

        result: list[dict[str, object]] = k.wait_for(got, 10, f"audit entries for {params}")
        return result

    refused = entries(outcome="refused")
    assert {e["actor"] for e in refused} == {"nobody-here"} and not any(e["success"] for e in refused)
    assert {e["action"] for e in entries(actor="nobody-here")} == {"auth:Login"}
    assert {e["action"] for e in entries(action="connections:*")} == {"connections:Write"}
    assert {e["target"] for e in entries(action="connections:Write", outcome="ok")} == {"aud"}
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert entries(since=hour_ago, actor="admin")
    r = k.api("GET", "/api/v1/admin/audit", params={"until": hour_ago})
    assert r.status_code == 200 and r.json() == {"entries": [], "nextCursor": None}
    r = k.api("GET", "/api/v1/admin/audit", params={"since": "yesterday"})
    assert r.status_code == 400 and "since" in r.json()["error"]["message"]
    r = k.api("GET", "/api/v1/admin/audit", params={"outcome": "maybe"})
    assert r.status_code == 400 and "outcome" in r.json()["error"]["message"]


def test_me_answers_backup_and_access_key_actions(shared_kiok: Standalone) -> None:
    k = shared_kiok
    allowed = k.api("GET", "/api/v1/me").json()["allowed"]
    for action in ("admin:Backup", "admin:ListBackups", "admin:Restore", "iam:CreateAccessKey"):
        assert allowed[action] is True, action
    assert k.api("POST", "/api/v1/iam/users", json={"user": "aud-plain", "password": PW}).status_code == 201
    token = httpx.post(
        k.url + "/api/v1/auth/login", json={"user": "aud-plain", "password": PW}, timeout=30
    ).json()["accessToken"]
    plain = httpx.get(k.url + "/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    # A user without a policy still manages its own keys; backups are not offered.
    assert plain["allowed"]["iam:CreateAccessKey"] is True
    assert plain["allowed"]["iam:ListAccessKeys"] is True
    assert plain["allowed"]["admin:Backup"] is False and plain["allowed"]["admin:ListBackups"] is False


def test_who_triggered_paused_deleted_or_cancelled_is_on_record(shared_kiok: Standalone) -> None:
    """A run said nothing of who triggered it, and pausing, unpausing or deleting a DAG or
    cancelling a run left no record of who did: what an operator asks first ("who paused
    this?"), and what Airflow's audit log answers."""
    k = shared_kiok
    policy = {"Statement": [{"Effect": "Allow", "Action": ["dags:*", "runs:*"], "Resource": ["dag/who*"]}]}
    assert (
        k.api("POST", "/api/v1/iam/policies", json={"policy": "who", "document": policy}).status_code == 201
    )
    user = {"user": "aud-operator", "password": PW, "policies": ["who"]}
    assert k.api("POST", "/api/v1/iam/users", json=user).status_code == 201
    token = httpx.post(
        k.url + "/api/v1/auth/login", json={"user": "aud-operator", "password": PW}, timeout=30
    ).json()["accessToken"]
    k.register("dag: {id: who}\ntasks: [{id: t, script: 'sleep 30'}]\n")
    with httpx.Client(base_url=k.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as operator:
        run = operator.post("/api/v1/dags/who/runs", json={"args": {}})
        assert run.status_code == 201, run.text
        run_id = run.json()["runId"]
        assert k.run(run_id)["triggeredBy"] == "aud-operator"
        assert operator.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
        assert operator.post("/api/v1/dags/who/pause").status_code == 200
        assert operator.post("/api/v1/dags/who/unpause").status_code == 200
        assert operator.delete("/api/v1/dags/who").status_code == 200

    def recorded() -> list[tuple[object, object, object]] | None:
        r = k.api("GET", "/api/v1/admin/audit", params={"actor": "aud-operator"})
        entries = [e for e in reversed(r.json()["entries"]) if e["action"] != "auth:Login"]
        got = [(e["action"], e["target"], e["detail"]) for e in entries]
        return got if len(got) >= 4 else None

    assert k.wait_for(recorded, 10, "the operator's records") == [
        ("runs:Cancel", run_id, ""),
        ("dags:Pause", "who", "paused"),
        ("dags:Pause", "who", "unpaused"),
        ("dags:Delete", "who", ""),
    ]
