"""Maintenance mode on real processes: no run starts (a trigger gets 503 with Retry-After and
``maintenanceMode``; pending runs wait) while running runs finish and cancel, reads and DAG
changes go on; pending runs start when it ends; the flag survives kill -9 of a standalone
and of the leader of three masters; ``kiok admin maintenance``; ``/cluster/health``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import Master, MasterGroup, Standalone, WorkerProcess, kiok_executable

FAST = {"KIOK_WORKER_HEARTBEAT_TIMEOUT_MS": "3000", "KIOK_WORKER_HEARTBEAT_INTERVAL_MS": "300"}


def gated_dag(dag_id: str, gate: Path) -> str:
    """A DAG whose task runs until ``gate`` exists; one run at a time."""
    return (
        f"dag: {{id: {dag_id}, max_active_runs: 1}}\n"
        "tasks:\n"
        f"  - {{id: t, script: 'while [ ! -e {gate} ]; do sleep 0.05; done; echo done'}}\n"
    )


def maintenance(node: Standalone, enabled: bool | None = None) -> dict[str, Any]:
    if enabled is None:
        r = node.api("GET", "/api/v1/admin/maintenance")
    else:
        r = node.api("POST", "/api/v1/admin/maintenance", json={"enabled": enabled})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def health(node: Standalone) -> dict[str, Any]:
    body: dict[str, Any] = node.http("GET", node.url + "/cluster/health").json()
    return body


def assert_refused_for_maintenance(node: Standalone, dag_id: str, retry_after: int = 30) -> None:
    r = node.api("POST", f"/api/v1/dags/{dag_id}/runs", json={})
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == str(retry_after)
    body = r.json()
    assert body["maintenanceMode"] is True and body["retryAfterSeconds"] == retry_after
    assert body["error"]["code"] == "maintenance_mode"


def test_maintenance_stops_new_runs_and_lets_running_ones_finish(
    standalone_factory: Any, task_tmp_path: Path
) -> None:
    node: Standalone = standalone_factory(env={"KIOK_CLUSTER_MAINTENANCE_RETRY_AFTER_SECONDS": "7"})
    gate = task_tmp_path / "gate"
    node.register(gated_dag("gated", gate))
    running = node.trigger("gated")
    node.wait_run(running, 20, states=("RUNNING",))
    pending = node.trigger("gated")  # held back by max_active_runs: 1
    doomed = node.trigger("gated")
    assert health(node)["maintenanceMode"] is False

    on = maintenance(node, True)
    assert on["enabled"] is True and on["by"] == "admin" and on["since"] and on["retryAfterSeconds"] == 7
    assert maintenance(node)["enabled"] is True and health(node)["maintenanceMode"] is True
    assert_refused_for_maintenance(node, "gated", retry_after=7)
    # Reads, cancel and DAG changes keep working.
    node.register("dag: {id: another}\ntasks:\n  - {id: t, script: 'true'}\n")
    r = node.api("POST", f"/api/v1/runs/{doomed}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "CANCELLED", r.text
    # The running run finishes; the pending one waits, saying why.
    gate.touch()
    assert node.wait_run(running, 20)["state"] == "SUCCESS"
    waiting = node.wait_for(
        lambda: "maintenance" in str(node.run(pending)["tasks"]["t"]["waiting"]) and node.run(pending),
        20,
        "the pending run to wait for maintenance to end",
    )
    assert waiting["state"] == "PENDING"

    off = maintenance(node, False)
    assert off["enabled"] is False and off["until"]
    assert node.wait_run(pending, 20)["state"] == "SUCCESS"
    assert node.wait_run(node.trigger("gated"), 20)["state"] == "SUCCESS"
    assert health(node)["maintenanceMode"] is False
    r = node.api("POST", "/api/v1/admin/maintenance", json={"enabled": "yes"})
    assert r.status_code == 400 and "enabled" in r.json()["error"]["message"], r.text


def test_maintenance_survives_kill9_of_a_standalone(standalone_factory: Any) -> None:
    node: Standalone = standalone_factory()
    node.register("dag: {id: quick}\ntasks:\n  - {id: t, script: 'true'}\n")
    maintenance(node, True)
    node.kill9()
    node.start()
    assert maintenance(node)["enabled"] is True and health(node)["maintenanceMode"] is True
    assert_refused_for_maintenance(node, "quick")
    maintenance(node, False)
    assert node.wait_run(node.trigger("quick"), 20)["state"] == "SUCCESS"


def test_kiok_admin_maintenance_on_off_status(standalone_factory: Any, tmp_path: Path) -> None:
    node: Standalone = standalone_factory()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOK_")}
    env.update(
        KIOK_MASTER=f"127.0.0.1:{node.admin_port}",
        KIOK_USER_TOKEN=node.token,
        XDG_CONFIG_HOME=str(tmp_path / "config"),
    )

    def kiok(*args: str) -> str:
        done = subprocess.run(
            [kiok_executable(), *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert kiok("admin", "maintenance", "status").strip() == "maintenance mode: off"
    assert kiok("admin", "maintenance", "on").startswith("maintenance mode: on (since ")
    assert kiok("admin", "maintenance", "status").startswith("maintenance mode: on")
    assert health(node)["maintenanceMode"] is True
    assert kiok("admin", "maintenance", "off").startswith("maintenance mode: off (last on ")
    assert '"enabled": false' in kiok("--json", "admin", "maintenance", "status")
    bad = subprocess.run(
        [kiok_executable(), "admin", "maintenance", "maybe"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "maybe" in bad.stderr


@pytest.mark.slow
def test_maintenance_survives_the_leaders_death(tmp_path: Path) -> None:
    group = MasterGroup(tmp_path, extra_env=FAST)
    worker: WorkerProcess | None = None
    try:
        group.start()
        leader = group.leader()
        follower = group.followers(leader)[0]
        worker = WorkerProcess(
            tmp_path / "w1",
            group.workers_address,
            "w1",
            {**FAST, "KIOK_WORKER_JOIN_TOKEN": leader.join_token()},
        )
        worker.start()
        for m in group.masters.values():
            m.wait_open()
        follower.register("dag: {id: quick}\ntasks:\n  - {id: t, script: 'true'}\n")
        assert maintenance(follower, True)["enabled"] is True  # forwarded to the leader
        group.settle()
        for m in group.masters.values():
            assert health(m)["maintenanceMode"] is True
        leader.kill9()
        dead = next(mid for mid, m in group.masters.items() if m is leader)
        new_leader: Master = group.leader(exclude=dead)
        assert health(new_leader)["maintenanceMode"] is True
        new_leader.wait_open()  # the worker has found the new leader
        assert maintenance(new_leader)["enabled"] is True
        new_leader.wait_for(
            lambda: (
                new_leader.api("POST", "/api/v1/dags/quick/runs", json={}).status_code == 503
                and new_leader.api("POST", "/api/v1/dags/quick/runs", json={}).json().get("maintenanceMode")
            ),
            30,
            "the new leader to refuse triggers for maintenance",
        )
        assert_refused_for_maintenance(new_leader, "quick")
        maintenance(new_leader, False)
        assert new_leader.wait_run(new_leader.trigger("quick"), 30)["state"] == "SUCCESS"
    finally:
        if worker is not None:
            worker.stop()
        group.stop()
