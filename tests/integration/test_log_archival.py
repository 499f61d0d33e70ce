"""Job logs archived to S3 (issue 16 §1) with a real ``kiok standalone`` and a real S3 server
(moto, and SeaweedFS, which checks signatures): logs read the same through the API once
archived, the bucket holds no log text, S3 going away and coming back loses nothing, and
deleting a run deletes its objects."""

from __future__ import annotations

import re
from pathlib import Path

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


def _wait_archived(node: Standalone, s3: S3Server, bucket: str, run_id: str) -> None:
    """Until run ``run_id`` has ended SUCCESS and its task's log is archived in ``bucket``."""
    assert node.wait_run(run_id, 30)["state"] == "SUCCESS"
    node.wait_for(
        lambda: (
            _metric(node, "kiok_joblog_archive_lag_bytes") == 0
            and any(f"/{run_id}/talk/" in k for k in s3.all_bytes(bucket))
        ),
        30,
        f"the logs of {run_id} to be archived",
    )


@pytest.mark.parametrize("server_fixture", ["s3_moto", "s3_seaweed"])
def test_logs_archive_read_back_and_go_with_their_run(
    standalone_factory: object, server_fixture: str, request: pytest.FixtureRequest
) -> None:
    s3: S3Server = request.getfixturevalue(server_fixture)
    bucket = s3.new_bucket()
    node = _node(standalone_factory, s3, bucket)
    run_id = node.trigger(node.register(DAG))
    _wait_archived(node, s3, bucket, run_id)
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


def test_logs_archived_after_a_restored_backup_are_swept_as_orphans(
    standalone_factory: object, s3_moto: MotoS3, tmp_path: Path
) -> None:
    """Restoring a backup older than some archived logs leaves their objects to runs the
    restored state does not have: once older than the grace they are deleted. Objects of the
    restored runs stay (and read back); what this cluster did not write (another cluster's
    run under the prefix: it does not decrypt) and keys kiok does not make are left alone."""
    bucket = s3_moto.new_bucket()
    env = {
        "KIOK_JOBLOG_S3_ENDPOINT": s3_moto.endpoint,
        "KIOK_JOBLOG_S3_BUCKET": bucket,
        "KIOK_JOBLOG_S3_ACCESS_KEY": ACCESS_KEY,
        "KIOK_JOBLOG_S3_SECRET_KEY": SECRET_KEY,
        "KIOK_JOBLOG_FLUSH_INTERVAL_MS": "300",
        "KIOK_JOBLOG_WORKER_BATCH_INTERVAL_MS": "200",
        "KIOK_JOBLOG_S3_ORPHAN_GRACE_MS": "2000",
        "KIOK_BACKUP_DIR": str(tmp_path / "backups"),
    }
    node: Standalone = standalone_factory(env=env)  # type: ignore[operator]
    dag = node.register(DAG)

    def archived(run_id: str) -> list[str]:
        return [k for k in s3_moto.all_bytes(bucket) if k.startswith(f"joblogs/{run_id}/")]

    kept = node.trigger(dag)
    _wait_archived(node, s3_moto, bucket, kept)
    r = node.api("POST", "/api/v1/admin/backup", timeout=120)
    assert r.status_code == 201, r.text
    backup_id = r.json()["backupId"]
    orphan = node.trigger(dag)
    _wait_archived(node, s3_moto, bucket, orphan)
    client = s3_moto.client()
    foreign = "joblogs/another-clusters-run/talk/0000000000000000-0000000000000010"
    client.put_object(Bucket=bucket, Key=foreign, Body=b"x" * 64)
    client.put_object(Bucket=bucket, Key="joblogs/README", Body=b"not kiok's")
    kept_keys = archived(kept)

    r = node.api(
        "POST", f"/api/v1/admin/backups/{backup_id}/restore", json={"confirm": backup_id}, timeout=120
    )
    assert r.status_code == 200, r.text
    node._token = None  # the restored store has its own sessions
    node.wait_for(lambda: not archived(orphan), 60, "the orphaned logs to be deleted")
    left = s3_moto.all_bytes(bucket)
    assert foreign in left and "joblogs/README" in left
    assert all(k in left for k in kept_keys)
    assert _read_all(node, kept, "talk", 1 << 20) == EXPECTED
    assert node.api("GET", f"/api/v1/runs/{orphan}").status_code == 404
    assert "orphaned job-log objects" in node.read_log()


def test_a_corrupt_archived_range_is_a_clear_500_logged_once(
    standalone_factory: object, s3_moto: MotoS3
) -> None:
    """An archived object altered in the bucket fails authentication: a server-side data
    problem, answered 500 ``archive_corrupt`` naming the log and the object, and logged as one
    line (no traceback), once per object however often it is read."""
    bucket = s3_moto.new_bucket()
    node = _node(standalone_factory, s3_moto, bucket)
    run_id = node.trigger(node.register(DAG))
    _wait_archived(node, s3_moto, bucket, run_id)
    key = min(k for k in s3_moto.all_bytes(bucket) if f"/{run_id}/talk/" in k)
    client = s3_moto.client()
    data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[40] ^= 1
    client.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    for _ in range(3):
        r = node.api("GET", f"/api/v1/runs/{run_id}/tasks/talk/log")
        assert r.status_code == 500, r.text
        error = r.json()["error"]
        assert error["code"] == "archive_corrupt"
        assert f"{run_id}/talk" in error["message"] and "fails authentication" in error["message"]
        assert f"(s3://{bucket}/{key}, frame " in error["message"]  # where an operator finds it
    log = node.read_log()
    assert "Traceback" not in log
    assert len([line for line in log.splitlines() if "fails authentication" in line]) == 1
    # Deleted from the bucket: as clear (it was a 500 ``object_missing`` saying only "not found").
    client.delete_object(Bucket=bucket, Key=key)
    for _ in range(2):
        r = node.api("GET", f"/api/v1/runs/{run_id}/tasks/talk/log")
        assert r.status_code == 500 and r.json()["error"]["code"] == "archive_corrupt", r.text
        message = r.json()["error"]["message"]
        # Named where an operator finds it: bucket and whole key (it was the key past the
        # prefix, found by the lifecycle probe of session 27).
        assert f"{run_id}/talk" in message and f"s3://{bucket}/{key} was deleted" in message
        assert "missing from the object store" in r.json()["error"]["message"]
