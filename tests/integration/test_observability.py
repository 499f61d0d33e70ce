"""Issue 17 §4 on real processes: JSON logs that name their process, run and request; a
follower that does not log the leader's health polls; ``/metrics`` with what an operator
graphs, every documented metric present and moving; ``/readyz``, ``/cluster/health`` and
``GET /api/v1/cluster`` telling the same story, down to a killed master."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kiok.testing.process import Master, MasterGroup, Standalone, WorkerProcess

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
FAST = {"KIOK_WORKER_HEARTBEAT_TIMEOUT_MS": "3000", "KIOK_WORKER_HEARTBEAT_INTERVAL_MS": "300"}


def documented_metrics() -> set[str]:
    text = DOCS.read_text().split("## Metrics", 1)[1]
    return set(re.findall(r"^\| `(kiok_[a-z_]+)` \|", text, re.M))


def scrape(node: Standalone) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: (name, sorted labels) -> value."""
    r = node.api("GET", "/metrics")
    assert r.status_code == 200, r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def names(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> set[str]:
    """Metric names as documented: a counter's ``_total`` kept, a histogram's series folded."""
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n, _ in samples if not n.endswith("_created")}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Standalone]:
    s = Standalone(tmp_path / "kiok", {"KIOK_LOG_FORMAT": "json", "KIOK_WORKER_TASK_SLOTS": "4"})
    s.start()
    yield s
    s.stop()


def test_json_logs_and_metrics_of_a_standalone(node: Standalone, task_tmp_path: Path) -> None:
    gate = task_tmp_path / "go"
    dag = node.register(
        "dag: {id: obs, max_active_runs: 1}\ntasks:\n"
        f"  - {{id: a, script: 'while [ ! -e {gate} ]; do sleep 0.02; done'}}\n"
        "  - {id: b, requires: [a], script: 'echo b'}\n"
        "  - {id: c, requires: [a], script: 'exit 3'}\n"
    )
    first = node.trigger(dag)
    node.wait_for(lambda: node.run(first)["tasks"]["a"]["state"] == "RUNNING", 20, "task a to run")
    second = node.trigger(dag)  # held back by max_active_runs: pending
    held = scrape(node)
    assert value(held, "kiok_pending_runs") == 1
    assert value(held, "kiok_runs", state="PENDING") == 1 and value(held, "kiok_runs", state="RUNNING") == 1
    assert value(held, "kiok_oldest_pending_run_age_seconds") > 0
    assert value(held, "kiok_worker_slots", state="busy") == 1
    assert value(held, "kiok_worker_slots", state="free") == 3
    assert value(held, "kiok_workers_connected") == 1
    gate.touch()
    for run_id in (first, second):
        assert node.wait_run(run_id)["state"] == "FAILED"

    r = node.api("GET", f"/api/v1/runs/{first}", headers={"X-Request-Id": "req-obs-1"})
    assert r.headers["x-request-id"] == "req-obs-1"
    assert re.fullmatch(r"[0-9a-f]{16}", node.api("GET", "/api/v1/dags").headers["x-request-id"])

    after = scrape(node)
    assert value(after, "kiok_commands_applied_total") > 0
    assert value(after, "kiok_runs_created_total") == 2
    assert value(after, "kiok_runs_finished_total", dag=dag, state="FAILED") == 2
    assert value(after, "kiok_tasks_finished_total", state="SUCCESS") == 4
    assert value(after, "kiok_tasks_finished_total", state="FAILED") == 2
    assert value(after, "kiok_task_duration_seconds_count", state="SUCCESS") == 4
    assert value(after, "kiok_task_duration_seconds_sum", state="SUCCESS") > 0
    assert value(after, "kiok_pending_runs") == 0 and value(after, "kiok_active_runs") == 0
    assert value(after, "kiok_oldest_pending_run_age_seconds") == 0
    assert (
        value(
            after,
            "kiok_http_request_duration_seconds_count",
            method="GET",
            route="/api/v1/runs/{run_id}",
            status="2xx",
        )
        >= 1
    )
    assert not any(first in dict(ls).get("route", "") for _, ls in after), "a raw path became a label"
    # Every documented metric is served (Raft's only by a group of masters).
    documented = documented_metrics()
    assert {m for m in documented if not m.startswith("kiok_raft_")} <= names(after)
    assert {n for n in names(after) if n.startswith("kiok_")} <= documented

    node.stop()
    lines = [line for line in node.read_log().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for rec in records:
        assert rec["service"] == "standalone" and rec["instance"] == "m1", rec
        assert {"ts", "level", "logger", "msg"} <= set(rec), rec
    for run_id in (first, second):
        assert any(rec.get("runId") == run_id and run_id in rec["msg"] for rec in records), run_id


@pytest.fixture
def group(tmp_path: Path) -> Iterator[MasterGroup]:
    g = MasterGroup(tmp_path, extra_env=FAST)
    yield g
    g.stop()


def views(m: Master) -> tuple[int, dict[str, Any], dict[str, Any], dict[str, Any]]:
    ready = m.http("GET", m.url + "/readyz", timeout=5)
    health = m.http("GET", m.url + "/cluster/health", timeout=5).json()
    cluster = m.api("GET", "/api/v1/cluster").json()
    return ready.status_code, ready.json(), health, cluster


def test_health_views_agree_in_a_group_of_masters_with_one_killed(tmp_path: Path, group: MasterGroup) -> None:
    group.start()
    leader = group.leader()
    follower, other = group.followers(leader)
    w = WorkerProcess(
        tmp_path / "w1", group.workers_address, "w1", {**FAST, "KIOK_WORKER_JOIN_TOKEN": leader.join_token()}
    )
    w.start()
    try:
        for m in group.masters.values():
            m.wait_open()

        def all_healthy() -> bool:
            return all(
                (v := views(m))[0] == 200
                and v[1]["status"] == v[2]["status"] == v[3]["status"] == "healthy"
                and v[2]["connectedWorkers"] == 1  # followers too: the leader's count
                for m in group.masters.values()
            )

        leader.wait_for(all_healthy, 20, "every master to say healthy")
        cluster = follower.api("GET", "/api/v1/cluster").json()
        assert [x["address"] for x in cluster["workers"]] == [w.status_url]
        assert sorted(x["role"] for x in cluster["masters"]) == ["follower", "follower", "leader"]

        metrics = scrape(leader)
        assert value(metrics, "kiok_raft_term") >= 1 and value(metrics, "kiok_raft_is_leader") == 1
        assert value(metrics, "kiok_raft_commit_index") >= value(metrics, "kiok_raft_applied_index") > 0
        assert value(metrics, "kiok_raft_leader_changes_total") >= 1
        assert value(metrics, "kiok_workers_connected") == 1
        assert {m for m in documented_metrics() if m.startswith("kiok_raft_")} <= names(metrics)

        killed = next(mid for mid, m in group.masters.items() if m is other)
        other.kill9()

        def killed_is_unreachable(m: Master) -> bool:
            status, ready, health, cluster = views(m)
            roles = {x["id"]: x["role"] for x in cluster["masters"]}  # the leader's (forwarded)
            return (
                status == 200
                and ready["status"] == health["status"] == cluster["status"] == "degraded"
                and health["unreachableMasters"] == [killed]
                and health["connectedWorkers"] == 1
                and roles[killed] == "unreachable"
            )

        for m in (leader, follower):
            m.wait_for(lambda m=m: killed_is_unreachable(m), 20, f"{m.data_dir.name} to see {killed} down")
    finally:
        w.stop()
    # The whole test ran with a follower polling the leader twice a second: not one line of it.
    chatter = [line for line in follower.read_log().splitlines() if "httpx" in line or "HTTP Request" in line]
    assert chatter == []
