"""``dag.run_timeout`` against a real ``kiok standalone``: the leader fails a run that has not
finished in time; its running task is cancelled (process group signalled, as by the cancel
API), and the reason is in the run (``reason``) and in its run log."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.integration.test_cli import cli_for

pytestmark = pytest.mark.slow


def test_a_run_past_its_run_timeout_fails_with_the_reason(shared_kiok: Standalone, tmp_path: Path) -> None:
    kiok = shared_kiok
    dag = kiok.register(
        """
dag: {id: run_timeout_dag, run_timeout: 2s}
tasks:
  - id: slow
    script: sleep 120
  - id: after
    requires: [slow]
    script: echo never
"""
    )
    assert kiok.api("GET", f"/api/v1/dags/{dag}").json()["spec"]["dag"]["run_timeout"] == "2000ms"
    run_id = kiok.trigger(dag)
    run = kiok.wait_run(run_id, timeout_s=60)
    assert run["state"] == "FAILED", run
    assert run["reason"] == "run timed out after 2s", run
    assert run["tasks"]["slow"]["state"] == "CANCELLED", run
    assert run["tasks"]["after"]["state"] == "CANCELLED", run
    run_log = kiok.log(run_id, "__run__")
    assert "run timed out after 2s: failing the run, its tasks are cancelled" in run_log
    # The driver's last line says why the walk stopped, never a state the run did not end in.
    assert "run stopped, cancelled: run timed out after 2s" in run_log and "finished CANCELLED" not in run_log
    cli = cli_for(kiok, tmp_path / "config")
    cli.ok("login", "--user", "admin", "--password", ADMIN_PASSWORD)
    shown = cli.ok("runs", "status", run_id)
    assert "reason:    run timed out after 2s" in shown, shown
    # The task's own log says why it was stopped, not only that it was.
    assert "[kiok] attempt 1 cancelled: run timed out after 2s;" in kiok.log(run_id, "slow")


def test_run_timeout_is_validated(shared_kiok: Standalone) -> None:
    r = shared_kiok.api(
        "POST",
        "/api/v1/dags",
        content="dag: {id: bad_run_timeout, run_timeout: soon}\ntasks: [{id: a, script: 'true'}]\n",
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 400 and "run_timeout" in r.text, r.text
