"""A standalone master killed (-9) in the middle of a restore, between replacing its state
store and its job-log store, finishes the restore when it starts again: the redo marker
names the verified copy, and the API then shows the backup's state in both stores.

``kiok.backup.restore.pause.ms`` (a testing aid) holds the swap after each store so that the
kill lands between the two; the test waits for the marker on disk and the master's own log
line saying the first store was replaced."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import httpx

from kiok.store.restore import MARKER
from kiok.testing.process import Standalone
from tests.integration.test_backup_restore import FAST, fresh_login, ok


def test_a_master_killed_between_two_stores_finishes_the_restore_when_it_starts(
    standalone_factory: Any, tmp_path: Path
) -> None:
    env = {**FAST, "KIOK_BACKUP_DIR": str(tmp_path / "backups"), "KIOK_BACKUP_RESTORE_PAUSE_MS": "120000"}
    node: Standalone = standalone_factory("kiok", env)
    node.register("dag: {id: hello}\ntasks:\n  - {id: t, script: 'echo hello-from-the-backup'}\n")
    done = node.trigger("hello")
    assert node.wait_run(done, 60)["state"] == "SUCCESS"
    backup_id = ok(node.api("POST", "/api/v1/admin/backup", timeout=120), 201)["backupId"]
    log_before = node.log(done, "t")
    assert "hello-from-the-backup" in log_before

    # After the backup: a new DAG (state store), and the run deleted with its log (both
    # stores): the restore must bring back the run *and* its log, from two different stores.
    node.register("dag: {id: later}\ntasks:\n  - {id: t, script: 'true'}\n")
    assert node.api("DELETE", f"/api/v1/runs/{done}").status_code in (200, 204)
    assert node.api("GET", f"/api/v1/runs/{done}").status_code == 404

    def ask() -> None:  # answered never: the master is killed mid-swap
        with contextlib.suppress(httpx.HTTPError):
            node.api(
                "POST", f"/api/v1/admin/backups/{backup_id}/restore", json={"confirm": backup_id}, timeout=150
            )

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    marker = node.data_dir / MARKER
    node.wait_for(
        lambda: marker.exists() and "store state replaced" in node.read_log(), 90, "the state store replaced"
    )
    assert "store joblog replaced" not in node.read_log()
    node.kill9()
    asking.join(30)
    assert marker.exists()

    node.start()
    assert f"restore {backup_id} was interrupted mid-swap: finishing it" in node.read_log()
    assert "store joblog replaced" in node.read_log()
    assert not marker.exists()
    fresh_login(node)  # the restored store's signing key
    assert sorted(d["dagId"] for d in ok(node.api("GET", "/api/v1/dags"))["dags"]) == ["hello"]
    assert ok(node.api("GET", f"/api/v1/runs/{done}"))["state"] == "SUCCESS"
    assert node.log(done, "t") == log_before
    # Recorded as if it had not been interrupted.
    last = ok(node.api("GET", "/api/v1/admin/backups"))["lastRestore"]
    assert last["backupId"] == backup_id and last["by"] == "admin"
    # And the master works on the restored state.
    again = node.trigger("hello")
    assert node.wait_run(again, 60)["state"] == "SUCCESS"
