"""Encryption at rest: no plaintext of a task's output, a DAG's script or a password in any
file of the data directory or kiok's own log; a wrong master key changes nothing."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone

KEY = "correct-horse-battery-staple-0123456789"


def every_file(*roots: Path) -> list[Path]:
    return [Path(d) / f for root in roots for d, _, files in os.walk(root) for f in files]


def test_no_plaintext_in_the_data_directory_or_logs(standalone_factory: Any) -> None:
    kiok: Standalone = standalone_factory(env={"KIOK_MASTER_KEY": KEY})
    kiok.register(
        "dag: {id: leaky}\ntasks:\n"
        "  - {id: t, script: 'echo SCRIPT-MARK-5150 >/dev/null; echo OUTPUT-MARK-$((6000+2))'}\n"
    )
    run_id = kiok.trigger("leaky")
    assert kiok.wait_run(run_id)["state"] == "SUCCESS"
    assert kiok.log(run_id, "t") == "OUTPUT-MARK-6002\n"  # readable through the API
    kiok.stop()  # flush everything RocksDB holds in memory to its files
    needles = [b"OUTPUT-MARK-6002", b"SCRIPT-MARK-5150", ADMIN_PASSWORD.encode(), KEY.encode()]
    files = [*every_file(kiok.data_dir), kiok.log_path]
    assert len(files) > 10
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"{needle!r} in plaintext in {path}"


def test_a_wrong_master_key_is_refused_and_changes_nothing(standalone_factory: Any) -> None:
    kiok: Standalone = standalone_factory(env={"KIOK_MASTER_KEY": KEY})
    kiok.register("dag: {id: kept}\ntasks: [{id: t, script: 'true'}]\n")
    kiok.stop()

    def snapshot() -> dict[str, str]:
        # kiok.lock only holds the pid of the last process that opened the directory
        files = [p for p in every_file(kiok.data_dir) if p.name != "kiok.lock"]
        return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    before = snapshot()
    kiok.extra_env["KIOK_MASTER_KEY"] = "another-key-that-is-long-enough-0123456789"
    with pytest.raises(RuntimeError, match="exited"):
        kiok.start(timeout_s=20)
    assert "does not match the key this data directory was created with" in kiok.read_log()
    assert snapshot() == before
    kiok.extra_env["KIOK_MASTER_KEY"] = KEY
    kiok.start()
    assert kiok.api("GET", "/api/v1/dags/kept").status_code == 200


def test_without_a_master_key_a_key_file_is_generated_with_a_warning(standalone_factory: Any) -> None:
    kiok: Standalone = standalone_factory()
    key_file = kiok.data_dir / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "KIOK_MASTER_KEY is not set" in kiok.read_log()
    kiok.register("dag: {id: d}\ntasks: [{id: t, script: 'true'}]\n")
    kiok.stop()
    kiok.start()  # the same generated key opens the store again
    assert kiok.api("GET", "/api/v1/dags/d").status_code == 200


def test_rotation_keeps_old_data_readable_across_a_restart(standalone_factory: Any) -> None:
    kiok: Standalone = standalone_factory(env={"KIOK_MASTER_KEY": KEY})
    kiok.register("dag: {id: before}\ntasks: [{id: t, script: 'echo old-log'}]\n")
    old_run = kiok.trigger("before")
    kiok.wait_run(old_run)
    for key in ("metadata-encryption", "joblog-encryption"):
        r = kiok.api("POST", "/api/v1/admin/kms/rotate", json={"key": key})
        assert r.status_code == 200 and r.json() == {"key": key, "version": 2}
    listed = {k["key"]: k["version"] for k in kiok.api("GET", "/api/v1/admin/kms").json()["keys"]}
    assert listed["metadata-encryption"] == 2 and listed["connection-encryption"] == 1
    assert kiok.api("POST", "/api/v1/admin/kms/rotate", json={"key": "nope"}).status_code == 400
    kiok.register("dag: {id: after}\ntasks: [{id: t, script: 'echo new-log'}]\n")
    new_run = kiok.trigger("after")
    kiok.wait_run(new_run)
    kiok.stop()
    kiok.start()
    assert kiok.api("GET", "/api/v1/dags/before").status_code == 200  # written under version 1
    assert kiok.api("GET", "/api/v1/dags/after").status_code == 200  # written under version 2
    assert kiok.log(old_run, "t") == "old-log\n" and kiok.log(new_run, "t") == "new-log\n"
    assert {k["key"]: k["version"] for k in kiok.api("GET", "/api/v1/admin/kms").json()["keys"]}[
        "joblog-encryption"
    ] == 2
