"""Backup and restore on real processes: the disaster-recovery recipe (back up, lose the data
directory, restore into a fresh master with the same KIOK_MASTER_KEY) to a directory and to
S3 (moto), incremental backups, a run caught mid-flight by the backup finishing after the
restore, a damaged backup refused before anything changes, the schedule, and the CLI."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.integration.relayed import relayed
from tests.integration.test_cli import cli_for
from tests.s3_fixture import REGION, MotoS3, s3_moto, s3_server  # noqa: F401 (fixtures)

KEY = "backup-test-master-key-0123456789abcdef"
FAST = {"KIOK_MASTER_KEY": KEY, "KIOK_WORKER_HEARTBEAT_TIMEOUT_MS": "3000"}
POLICY = {"Statement": [{"Effect": "Allow", "Action": ["dags:List"], "Resource": ["dag/*"]}]}


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def populate(node: Standalone, gate: Path) -> dict[str, str]:
    """DAGs, a finished run with a log, a user, a policy, a connection, and a run left RUNNING
    until ``gate`` exists."""
    node.register("dag: {id: hello}\ntasks:\n  - {id: t, script: 'echo hello-from-the-backup'}\n")
    node.register(
        f"dag: {{id: gated}}\ntasks:\n  - {{id: t, script: 'while [ ! -e {gate} ]; do sleep 0.05; done'}}\n"
    )
    done = node.trigger("hello")
    assert node.wait_run(done, 60)["state"] == "SUCCESS"
    ok(node.api("POST", "/api/v1/iam/policies", json={"policy": "readers", "document": POLICY}), 201)
    ok(
        node.api(
            "POST",
            "/api/v1/iam/users",
            json={"user": "alice", "password": "pw-alice-1234", "policies": ["readers"]},
        ),
        201,
    )
    conn = {
        "connectionId": "db",
        "type": "generic",
        "description": "the db",
        "properties": {"password": "s3cret"},
    }
    ok(node.api("POST", "/api/v1/connections", json=conn), 201)
    running = node.trigger("gated")
    node.wait_run(running, 60, states=("RUNNING",))
    return {"done": done, "running": running}


def picture(node: Standalone, runs: dict[str, str]) -> dict[str, Any]:
    """What must survive, as the API shows it."""
    return {
        "dags": sorted(d["dagId"] for d in ok(node.api("GET", "/api/v1/dags"))["dags"]),
        "done": {k: v for k, v in node.run(runs["done"]).items() if k in ("state", "dagId", "runId")},
        "log": node.log(runs["done"], "t"),
        "users": sorted(u["user"] for u in ok(node.api("GET", "/api/v1/iam/users"))["users"]),
        "policies": sorted(p["policy"] for p in ok(node.api("GET", "/api/v1/iam/policies"))["policies"]),
        "connections": ok(node.api("GET", "/api/v1/connections/db")),
    }


def fresh_login(node: Standalone) -> None:
    """A restore ends the sessions from before it: log in again."""
    node._token = None


def restore(node: Standalone, backup_id: str) -> Any:
    r = node.api(
        "POST", f"/api/v1/admin/backups/{backup_id}/restore", json={"confirm": backup_id}, timeout=120
    )
    return ok(r)


def test_disaster_recovery_from_a_directory_backup(
    standalone_factory: Any, task_tmp_path: Path, tmp_path: Path
) -> None:
    target = tmp_path / "backups"
    env = {**FAST, "KIOK_BACKUP_DIR": str(target)}
    original: Standalone = standalone_factory("original", env)
    runs = populate(original, task_tmp_path / "gate")
    before = picture(original, runs)
    assert "hello-from-the-backup" in before["log"]

    first = ok(original.api("POST", "/api/v1/admin/backup", timeout=120), 201)
    assert first["incrementalBase"] is None and set(first["stores"]) == {"state", "joblog"}
    second = ok(original.api("POST", "/api/v1/admin/backup", timeout=120), 201)
    assert second["incrementalBase"] == first["backupId"]
    assert second["uploadedBytes"] < first["uploadedBytes"]
    listed = ok(original.api("GET", "/api/v1/admin/backups"))["backups"]
    assert [b["id"] for b in listed] == [second["backupId"], first["backupId"]]
    # Encrypted: no object holds the log text or the connection's secret.
    for path in target.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"hello-from-the-backup" not in data and b"s3cret" not in data, path
    original.kill9()  # the disaster (a SIGTERM would drain the gated run first)

    fresh: Standalone = standalone_factory("fresh", env)
    assert "gated" not in json.dumps(ok(fresh.api("GET", "/api/v1/dags")))
    refused = fresh.api("POST", f"/api/v1/admin/backups/{second['backupId']}/restore", json={})
    assert refused.status_code == 400 and "confirm" in refused.text
    missing = fresh.api("POST", "/api/v1/admin/backups/nope/restore", json={"confirm": "nope"})
    assert missing.status_code == 404, missing.text
    restored = restore(fresh, second["backupId"])
    assert restored["restored"] == second["backupId"]
    fresh_login(fresh)
    assert picture(fresh, runs) == before
    # The run the backup caught RUNNING is not lost: it resumes and finishes.
    (task_tmp_path / "gate").touch()
    assert fresh.wait_run(runs["running"], 90)["state"] in ("SUCCESS", "FAILED")
    # New work after the restore goes on as usual.
    again = fresh.trigger("hello")
    assert fresh.wait_run(again, 60)["state"] == "SUCCESS"


def test_a_damaged_backup_is_refused_before_anything_changes(standalone_factory: Any, tmp_path: Path) -> None:
    target = tmp_path / "backups"
    node: Standalone = standalone_factory("kiok", {**FAST, "KIOK_BACKUP_DIR": str(target)})
    node.register("dag: {id: before}\ntasks:\n  - {id: t, script: 'true'}\n")
    taken = ok(node.api("POST", "/api/v1/admin/backup", timeout=120), 201)
    node.register("dag: {id: after}\ntasks:\n  - {id: t, script: 'true'}\n")
    victim = max(
        (p for p in (target / taken["backupId"]).rglob("*") if p.name.endswith(".sst")),
        key=lambda p: p.stat().st_size,
    )
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 7])
    r = node.api(
        "POST", f"/api/v1/admin/backups/{taken['backupId']}/restore", json={"confirm": taken["backupId"]}
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "backup_corrupt", r.text
    assert victim.name in r.json()["error"]["message"]
    dags = sorted(d["dagId"] for d in ok(node.api("GET", "/api/v1/dags"))["dags"])
    assert dags == ["after", "before"]


def test_disaster_recovery_from_s3(standalone_factory: Any, s3_moto: MotoS3, task_tmp_path: Path) -> None:  # noqa: F811
    bucket = s3_moto.new_bucket()
    env = {
        **FAST,
        "KIOK_BACKUP_S3_ENDPOINT": s3_moto.endpoint,
        "KIOK_BACKUP_S3_REGION": REGION,
        "KIOK_BACKUP_S3_BUCKET": bucket,
        "KIOK_BACKUP_S3_ACCESS_KEY": "kiok-test",
        "KIOK_BACKUP_S3_SECRET_KEY": "kiok-test-secret",
    }
    original: Standalone = standalone_factory("original", env)
    runs = populate(original, task_tmp_path / "gate")
    before = picture(original, runs)
    taken = ok(original.api("POST", "/api/v1/admin/backup", timeout=120), 201)
    stored = s3_moto.all_bytes(bucket)
    assert stored and all(key.startswith("backups/") for key in stored)
    assert f"backups/{taken['backupId']}/manifest.json" in stored
    assert not any(b"hello-from-the-backup" in data for data in stored.values())
    original.kill9()  # the disaster (a SIGTERM would drain the gated run first)

    fresh: Standalone = standalone_factory("fresh", env)
    latest = ok(fresh.api("GET", "/api/v1/admin/backups"))["backups"][0]["id"]
    assert latest == taken["backupId"]
    restore(fresh, latest)
    fresh_login(fresh)
    assert picture(fresh, runs) == before
    (task_tmp_path / "gate").touch()
    assert fresh.wait_run(runs["running"], 90)["state"] in ("SUCCESS", "FAILED")


def test_schedule_and_cli(standalone_factory: Any, tmp_path: Path) -> None:
    node: Standalone = standalone_factory("kiok", {"KIOK_BACKUP_DIR": str(tmp_path / "backups")})
    assert ok(node.api("GET", "/api/v1/admin/backup/cron"))["cron"] is None
    bad = node.api("PUT", "/api/v1/admin/backup/cron", json={"cron": "every day"})
    assert bad.status_code == 400 and "cron" in bad.text
    assert ok(node.api("PUT", "/api/v1/admin/backup/cron", json={"cron": "0 3 * * *"}))["cron"] == "0 3 * * *"
    assert ok(node.api("GET", "/api/v1/admin/backup/cron"))["cron"] == "0 3 * * *"
    assert ok(node.api("PUT", "/api/v1/admin/backup/cron", json={"cron": None}))["cron"] is None

    # What a crashed backup left an hour ago goes with the next backup; a recent one stays.
    stale, recent = (
        tmp_path / "backups/20200101T000000000Z-dead00",
        tmp_path / "backups/20200101T000000000Z-abcdef",
    )
    for leftover in (stale, recent):
        (leftover / "state").mkdir(parents=True)
        (leftover / "state/000007.sst").write_bytes(b"uploaded before a crash")
    two_hours_ago = time.time() - 7200
    os.utime(stale / "state/000007.sst", (two_hours_ago, two_hours_ago))

    cli = cli_for(node, tmp_path / "cli")
    cli.ok("login", "--user", "admin", "--password", ADMIN_PASSWORD)
    backup_id = cli.ok("admin", "backup").strip()
    assert not (stale / "state/000007.sst").exists() and (recent / "state/000007.sst").exists()
    listed = cli.ok("admin", "backups")
    assert backup_id in listed and "last restore" not in listed
    assert ok(node.api("GET", "/api/v1/admin/backups"))["lastRestore"] is None
    refused = cli("admin", "restore", backup_id)
    assert refused.returncode != 0 and "--yes" in refused.stderr
    before = node.api("GET", "/api/v1/me")
    assert before.status_code == 200
    held = before.request.headers["Authorization"]
    assert f"restored {backup_id}" in cli.ok("admin", "restore", backup_id, "--yes")
    # Sessions from before the restore end (the backup holds the key they were signed with):
    # the API token and the CLI's saved login alike.
    gone = node.http("GET", node.url + "/api/v1/me", headers={"Authorization": held})
    assert gone.status_code == 401, gone.text
    assert cli("admin", "backups").returncode != 0
    # The restore is recorded on top of the restored state: the API and the CLI show it.
    cli.ok("login", "--user", "admin", "--password", ADMIN_PASSWORD)
    fresh_login(node)
    last = ok(node.api("GET", "/api/v1/admin/backups"))["lastRestore"]
    assert last["backupId"] == backup_id and last["by"] == "admin" and last["raftIndex"] is None
    assert last["time"].endswith("Z") and len(last["manifestSha256"]) == 64
    assert f"last restore: {backup_id} at {last['time']} by admin" in cli.ok("admin", "backups")


def test_a_planted_manifest_is_not_listed_as_a_backup(standalone_factory: Any, tmp_path: Path) -> None:
    """Whoever can write to the target plants a manifest (a copy of a real one, newer, its MAC
    forged): the API, and so the UI and the CLI, do not list it among the backups (a script
    restoring ``backups[0]`` must not pick it); it is named apart as not authentic."""
    target = tmp_path / "backups"
    node: Standalone = standalone_factory("kiok", {**FAST, "KIOK_BACKUP_DIR": str(target)})
    real = ok(node.api("POST", "/api/v1/admin/backup", timeout=120), 201)["backupId"]
    body = json.loads((target / real / "manifest.json").read_bytes())
    planted = "29990101T000000000Z-abcdef"
    body.update(id=planted, createdMs=32_472_144_000_000, mac="0" * 64)
    (target / planted).mkdir()
    (target / planted / "manifest.json").write_text(json.dumps(body))

    listed = ok(node.api("GET", "/api/v1/admin/backups"))
    assert [b["id"] for b in listed["backups"]] == [real]
    assert [r["id"] for r in listed["rejected"]] == [planted]
    assert "MAC" in listed["rejected"][0]["problem"]
    cli = cli_for(node, tmp_path / "cli")
    cli.ok("login", "--user", "admin", "--password", ADMIN_PASSWORD)
    shown = cli("admin", "backups")
    assert shown.returncode == 0 and real in shown.stdout and planted not in shown.stdout
    assert planted in shown.stderr and "not authentic" in shown.stderr


def test_without_a_target_backups_are_refused_by_name(kiok: Standalone, tmp_path: Path) -> None:
    r = kiok.api("POST", "/api/v1/admin/backup")
    assert r.status_code == 409 and "kiok.backup.dir" in r.json()["error"]["message"], r.text
    # Listing says there is no target, as an answer (it was a 409 too: an error in the
    # browser's console each time the UI's Backup & Restore page opened).
    listed = ok(kiok.api("GET", "/api/v1/admin/backups"))
    assert listed == {"targetSet": False, "backups": [], "rejected": [], "lastRestore": None}
    cli = cli_for(kiok, tmp_path / "cli")
    cli.ok("login", "--user", "admin", "--password", ADMIN_PASSWORD)
    assert "no backup target is set" in cli.ok("admin", "backups")


def test_a_backup_dir_that_is_no_directory_is_refused_by_name(
    standalone_factory: Any, tmp_path: Path
) -> None:
    """It was a 500 (and a traceback in the master's log) for a backup and for the list."""
    not_a_dir = tmp_path / "backups"
    not_a_dir.write_text("a file")
    node: Standalone = standalone_factory("kiok", {"KIOK_BACKUP_DIR": str(not_a_dir)})
    for method, path in (("POST", "/api/v1/admin/backup"), ("GET", "/api/v1/admin/backups")):
        r = node.api(method, path)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["message"].startswith(f"kiok.backup.dir: {not_a_dir} cannot be used"), r.text
    assert "Traceback" not in node.read_log()


def test_a_work_directory_that_cannot_be_written_is_refused_by_name(
    standalone_factory: Any, tmp_path: Path
) -> None:
    """Found by the lifecycle probe: a full disk under the master's work directory was a 500
    "internal error" and a traceback; here a file stands where the directory must go."""
    node: Standalone = standalone_factory("kiok", {"KIOK_BACKUP_DIR": str(tmp_path / "backups")})
    (node.data_dir / "backup-work").write_text("in the way")
    r = node.api("POST", "/api/v1/admin/backup", timeout=120)
    assert r.status_code == 503 and r.json()["error"]["code"] == "scratch_unavailable", r.text
    assert r.json()["error"]["message"].startswith(f"{node.data_dir / 'backup-work'}: cannot copy the stores")
    assert "Traceback" not in node.read_log()
    (node.data_dir / "backup-work").unlink()
    assert node.api("POST", "/api/v1/admin/backup", timeout=120).status_code == 201


def test_an_in_place_restore_keeps_the_runs_it_holds_and_stops_those_it_does_not(
    standalone_factory: Any, task_tmp_path: Path, tmp_path: Path
) -> None:
    """Restored in place on a single master, the worker that stays connected is taken back as
    a reconnecting one would be. Before: a run the backup caught RUNNING had its attempt
    killed and run again at once ("its worker was lost", though it never left), and a run
    created after the backup (absent from the restored state, a 404) went on being driven,
    unseen, its downstream tasks run."""
    node: Standalone = standalone_factory("kiok", {**FAST, "KIOK_BACKUP_DIR": str(tmp_path / "backups")})
    marks, gate, late_gate, ghost_ran = (
        task_tmp_path / n for n in ("marks", "gate", "late_gate", "ghost_ran")
    )
    node.register(
        "dag: {id: inflight}\ntasks:\n"
        f"  - {{id: a, script: 'echo att-$KIOK_ATTEMPT >> {marks}; "
        f"while [ ! -e {gate} ]; do sleep 0.05; done; echo gate-passed'}}\n"
    )
    node.register(
        "dag: {id: ghost}\ntasks:\n"
        f"  - {{id: a, script: 'while [ ! -e {late_gate} ]; do sleep 0.05; done'}}\n"
        f"  - {{id: b, requires: [a], script: 'touch {ghost_ran}'}}\n"
    )
    inflight = node.trigger("inflight")
    node.wait_for(marks.exists, 30, "the in-flight attempt to start")
    backup = ok(node.api("POST", "/api/v1/admin/backup", timeout=120), 201)["backupId"]
    ghost = node.trigger("ghost")
    node.wait_run(ghost, 30, states=("RUNNING",))

    restore(node, backup)
    fresh_login(node)
    assert node.api("GET", f"/api/v1/runs/{ghost}").status_code == 404
    node.wait_for(lambda: f"abandoning run {ghost}" in node.read_log(), 30, "the ghost run's driver to stop")
    late_gate.touch()  # a driver still walking it would run b now
    gate.touch()
    done = node.wait_run(inflight, 60)
    assert done["state"] == "SUCCESS" and done["tasks"]["a"]["attempt"] == 1, done
    assert marks.read_text() == "att-1\n"  # claimed again, not run again
    assert "interrupted" not in node.log(inflight, "__run__")
    # What its logs took between the backup and the restore is gone with the restored state:
    # they say so where the gap is (found by the lifecycle probe: they read as whole).
    gap = f"[kiok] restored from backup {backup}: what was written to this log between that backup"
    task_log, run_log = node.log(inflight, "a"), node.log(inflight, "__run__")
    assert gap in task_log and task_log.index(gap) < task_log.index("gate-passed"), task_log
    assert gap in run_log and run_log.index(gap) < run_log.index("a attempt 1 SUCCESS"), run_log
    assert not ghost_ran.exists()
    # The loops the restore started are not the restore request's: what they start (a run
    # they assign) logs no request id.
    after = node.trigger("inflight")
    assert node.wait_run(after, 60)["state"] == "SUCCESS"
    finished = [line for line in node.read_log().splitlines() if f"run {after} of inflight finished" in line]
    assert finished and "req=" not in finished[-1], finished


def test_a_run_its_worker_finished_while_cut_off_from_a_restoring_master_ends_as_it_ran(
    tmp_path: Path, task_tmp_path: Path
) -> None:
    """Found by the failover probe (session 25): the backup caught ``a`` RUNNING; ``a``
    then succeeded and ``b`` started (both acknowledged, so rolled back by the restore); the
    worker, cut off, finished the run and had only ``b``'s end left to send. Applied on the
    restored records, ``b`` stood SUCCESS while ``a``, RUNNING there, ran again after it. The
    report that ends a run now carries every task's record, so the masters hold what ran."""
    env = {"KIOK_MASTER_KEY": KEY, "KIOK_BACKUP_DIR": str(tmp_path / "backups")}
    with relayed(tmp_path, task_tmp_path, env) as r:
        run_id = r.trigger()
        r.master.wait_for(lambda: r.started("a"), 30, "a to start")
        backup = ok(r.master.api("POST", "/api/v1/admin/backup", timeout=120), 201)["backupId"]
        r.gates["a"].touch()
        r.cut_and_finish(run_id)
        restore(r.master, backup)
        fresh_login(r.master)
        assert r.master.run(run_id)["tasks"]["a"]["state"] == "RUNNING"  # as the backup has it
        r.relay.mend()
        r.assert_ran_once(r.master.wait_run(run_id, 60))
