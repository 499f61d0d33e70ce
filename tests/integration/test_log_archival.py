"""Job logs archived to S3 (issue 16 §1) with a real ``kiok standalone`` and a real S3 server
(moto, and SeaweedFS, which checks signatures): logs read the same through the API once
archived, the bucket holds no log text, S3 going away and coming back loses nothing, and
deleting a run deletes its objects."""

from __future__ import annotations

import re

import pytest

from kiok.testing.process import Standalone
from tests.s3_fixture import ACCESS_KEY, SECRET_KEY, MotoS3, S3Server

pytestmark = pytest.mark.slow

DAG = """
dag: {id: archived}
tasks:
  - {id: talk, script: 'for i in $(seq 1 2000); do echo "line $i: log-text-marker résumé"; done'}
"""
EXPECTED = "".join(f"line {i}: log-text-marker résumé\n" for i in range(1, 2001))


def _node(standalone_factory: object, server: S3Server, bucket: str) -> Standalone:
    env = {
        "KIOK_JOBLOG_S3_ENDPOINT": server.endpoint,
        "KIOK_JOBLOG_S3_BUCKET": bucket,
        "KIOK_JOBLOG_S3_ACCESS_KEY": ACCESS_KEY,
        "KIOK_JOBLOG_S3_SECRET_KEY": SECRET_KEY,
        "KIOK_JOBLOG_FLUSH_INTERVAL_MS": "300",
        "KIOK_JOBLOG_WORKER_BATCH_INTERVAL_MS": "200",
    }
    node: Standalone = standalone_factory(env=env)  # type: ignore[operator]
    return node


def _metric(node: Standalone, name: str) -> float:
    text = node.api("GET", "/metrics").text
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def _read_all(node: Standalone, run_id: str, task: str, limit: int) -> str:
    out: list[str] = []
    offset = 0
    while True:
        r = node.api(
            "GET", f"/api/v1/runs/{run_id}/tasks/{task}/log", params={"offset": offset, "limit": limit}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        if body["nextOffset"] == offset:
            return "".join(out)
        out.append(body["data"])
        offset = body["nextOffset"]


@pytest.mark.parametrize("server_fixture", ["s3_moto", "s3_seaweed"])
def test_logs_archive_read_back_and_go_with_their_run(
    standalone_factory: object, server_fixture: str, request: pytest.FixtureRequest
) -> None:
    s3: S3Server = request.getfixturevalue(server_fixture)
    bucket = s3.new_bucket()
    node = _node(standalone_factory, s3, bucket)
    run_id = node.trigger(node.register(DAG))
    assert node.wait_run(run_id, 30)["state"] == "SUCCESS"
    node.wait_for(
        lambda: (
            _metric(node, "kiok_joblog_archive_lag_bytes") == 0
            and any(f"/{run_id}/talk/" in k for k in s3.all_bytes(bucket))
        ),
        30,
        "the task's log to be archived",
    )
    assert _metric(node, "kiok_joblog_archived_bytes_total") >= len(EXPECTED.encode())
    for limit in (1000, 1 << 20):
        assert _read_all(node, run_id, "talk", limit) == EXPECTED
    assert "talk attempt 1 started" in _read_all(node, run_id, "__run__", 1 << 20)
    blob = b"".join(s3.all_bytes(bucket).values())
    assert b"log-text-marker" not in blob and b"line 1" not in blob

    assert node.api("DELETE", f"/api/v1/runs/{run_id}").status_code == 200
    node.wait_for(lambda: not s3.all_bytes(bucket), 30, "the run's archived objects to be deleted")


def test_s3_away_keeps_logs_and_archival_catches_up(standalone_factory: object, s3_moto: MotoS3) -> None:
    bucket = s3_moto.new_bucket()
    node = _node(standalone_factory, s3_moto, bucket)
    s3_moto.stop()
    dag = node.register(DAG)
    runs = [node.trigger(dag) for _ in range(2)]
    for run_id in runs:
        assert node.wait_run(run_id, 30)["state"] == "SUCCESS"
        assert _read_all(node, run_id, "talk", 1 << 20) == EXPECTED  # served from the local store
    node.wait_for(lambda: _metric(node, "kiok_joblog_archive_errors_total") >= 2, 30, "failed flushes")
    assert _metric(node, "kiok_joblog_archive_lag_bytes") >= 2 * len(EXPECTED.encode())
    s3_moto.start()  # the same port: S3 is back
    node.wait_for(lambda: _metric(node, "kiok_joblog_archive_lag_bytes") == 0, 30, "archival to catch up")
    keys = s3_moto.all_bytes(bucket)
    assert all(any(f"/{r}/talk/" in k for k in keys) for r in runs)
    for run_id in runs:
        assert _read_all(node, run_id, "talk", 4096) == EXPECTED
    log = node.read_log()
    assert log.count("job-log archival to S3 failed") == 1  # said once, not per attempt
    assert "works again" in log
