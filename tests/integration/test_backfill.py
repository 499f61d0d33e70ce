"""Backfill against a real ``kiok standalone``: one run per cron interval in the range, each
stamped with its interval (and ``KIOK_SCHEDULED_TIME`` = its start for the tasks), at most
``max_active_runs`` at once, idempotent; refusals are 400 (no schedule, bad date, too many)."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path

import pytest

from kiok.testing.process import Standalone

pytestmark = pytest.mark.slow


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_backfill_creates_one_run_per_interval_once(shared_kiok: Standalone, task_tmp_path: Path) -> None:
    kiok = shared_kiok
    dag = kiok.register(
        f"""
dag: {{id: backfilled, schedule: "0 0 * * *", max_active_runs: 1}}
tasks:
  - id: day
    script: |
      echo "$KIOK_SCHEDULED_TIME" >> {task_tmp_path}/days
      sleep 0.3
"""
    )
    r = kiok.api("POST", f"/api/v1/dags/{dag}/backfill", json={"from": "2026-01-01", "to": "2026-01-03"})
    assert r.status_code == 201, r.text
    created = r.json()["created"]
    assert len(created) == 3 and r.json()["existing"] == []
    runs = [kiok.wait_run(run_id, timeout_s=60) for run_id in created]
    assert [run["state"] for run in runs] == ["SUCCESS"] * 3, runs
    assert [run["trigger"] for run in runs] == ["backfill"] * 3
    assert [run["interval"] for run in runs] == [
        {"start": f"2026-01-0{d}T00:00:00.000Z", "end": f"2026-01-0{d + 1}T00:00:00.000Z"} for d in (1, 2, 3)
    ]
    days = sorted((task_tmp_path / "days").read_text().split())
    assert days == [f"2026-01-0{d}T00:00:00Z" for d in (1, 2, 3)], days
    # max_active_runs 1: no two of them ran at the same time.
    spans = sorted((_ts(run["startedAt"]), _ts(run["endedAt"])) for run in runs)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans

    again = kiok.api("POST", f"/api/v1/dags/{dag}/backfill", json={"from": "2026-01-01", "to": "2026-01-03"})
    assert again.status_code == 201 and again.json()["created"] == [], again.text
    assert sorted(again.json()["existing"]) == sorted(created)


def test_backfill_refusals(shared_kiok: Standalone) -> None:
    kiok = shared_kiok
    manual = kiok.register("dag: {id: bf_manual}\ntasks: [{id: a, script: 'true'}]\n")
    r = kiok.api("POST", f"/api/v1/dags/{manual}/backfill", json={"from": "2026-01-01", "to": "2026-01-02"})
    assert r.status_code == 400 and "no schedule" in r.text, r.text
    minutely = kiok.register(
        'dag: {id: bf_minutely, schedule: "* * * * *"}\ntasks: [{id: a, script: "true"}]\n'
    )
    r = kiok.api("POST", f"/api/v1/dags/{minutely}/backfill", json={"from": "2026-01-01", "to": "2026-01-01"})
    assert r.status_code == 400 and "more than 1000 intervals" in r.text, r.text
    r = kiok.api("POST", f"/api/v1/dags/{minutely}/backfill", json={"from": "yesterday", "to": "2026-01-01"})
    assert r.status_code == 400 and "from:" in r.text, r.text
    r = kiok.api("POST", f"/api/v1/dags/{minutely}/backfill", json={"from": "2026-01-02", "to": "2026-01-01"})
    assert r.status_code == 400 and "to:" in r.text, r.text
    r = kiok.api("POST", "/api/v1/dags/bf_nosuch/backfill", json={"from": "2026-01-01", "to": "2026-01-01"})
    assert r.status_code == 404, r.text


def _login_with(kiok: Standalone, user: str, statements: list[dict[str, str]]) -> dict[str, str]:
    """A new user holding only ``statements``; its Authorization header."""
    policy = {"policy": f"{user}-policy", "document": {"Statement": statements}}
    assert kiok.api("POST", "/api/v1/iam/policies", json=policy).status_code == 201
    body = {"user": user, "password": "Backfill-Password-1", "policies": [f"{user}-policy"]}
    assert kiok.api("POST", "/api/v1/iam/users", json=body).status_code == 201
    login = kiok.api(
        "POST", "/api/v1/auth/login", auth=False, json={"user": user, "password": body["password"]}
    )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['accessToken']}"}


def test_backfill_names_existing_runs_only_to_callers_who_may_read_them(shared_kiok: Standalone) -> None:
    """A caller who may trigger the DAG but not read its runs learns how many intervals had a
    run already, never their run ids."""
    kiok = shared_kiok
    dag = kiok.register('dag: {id: bf_private, schedule: "0 0 * * *"}\ntasks: [{id: a, script: "true"}]\n')
    days = {"from": "2026-02-01", "to": "2026-02-02"}
    first = kiok.api("POST", f"/api/v1/dags/{dag}/backfill", json=days)
    assert first.status_code == 201, first.text
    created = first.json()["created"]
    assert len(created) == 2 and first.json()["existing"] == [], first.text

    trigger = {"Effect": "Allow", "Action": "dags:Trigger", "Resource": f"dag/{dag}"}
    blind = _login_with(kiok, "bf-trigger-only", [trigger])
    r = kiok.api("POST", f"/api/v1/dags/{dag}/backfill", json=days, headers=blind)
    assert r.status_code == 201, r.text
    assert not any(run_id in r.text for run_id in created), r.text
    assert r.json()["created"] == [] and r.json()["existing"] == [], r.text
    assert r.json()["existingCount"] == 2 and r.json()["intervals"] == 2, r.text

    read = {"Effect": "Allow", "Action": "runs:Read", "Resource": f"dag/{dag}/run/{created[0]}"}
    reader = _login_with(kiok, "bf-trigger-read-one", [trigger, read])
    r = kiok.api("POST", f"/api/v1/dags/{dag}/backfill", json=days, headers=reader)
    assert r.status_code == 201, r.text
    assert r.json()["existing"] == [created[0]] and r.json()["existingCount"] == 2, r.text
