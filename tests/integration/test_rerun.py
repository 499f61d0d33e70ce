"""Re-run from failure against a real ``kiok standalone``: the failed task and its downstream
run again in the same run, succeeded upstreams are kept, attempt numbers go on, the run log
says who asked; refusals are 409 (still running), 400 (unknown task), 404 (unknown run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiok.testing.process import Standalone

pytestmark = pytest.mark.slow

_DAG = """
dag: {id: rerun_chain, params: {dir: /nonexistent}}
tasks:
  - id: extract
    script: echo "extract $KIOK_ATTEMPT" >> ${params.dir}/extract
  - id: load
    requires: [extract]
    script: |
      echo "load $KIOK_ATTEMPT" >> ${params.dir}/load
      [ -e ${params.dir}/fixed ]
  - id: report
    requires: [load]
    script: echo "report $KIOK_ATTEMPT" >> ${params.dir}/report
"""


def test_rerun_failed_tasks_in_the_same_run(shared_kiok: Standalone, task_tmp_path: Path) -> None:
    kiok = shared_kiok
    dag = kiok.register(_DAG)
    run_id = kiok.trigger(dag, {"dir": str(task_tmp_path)})
    first = kiok.wait_run(run_id)
    assert first["state"] == "FAILED", first
    assert [first["tasks"][t]["state"] for t in ("extract", "load", "report")] == [
        "SUCCESS",
        "FAILED",
        "SKIPPED",
    ]

    (task_tmp_path / "fixed").touch()
    r = kiok.api("POST", f"/api/v1/runs/{run_id}/rerun", json={})
    assert r.status_code == 200, r.text
    assert r.json()["rerun"] == ["load", "report"]
    assert r.json()["state"] == "PENDING" and r.json()["reruns"] == 1  # queued, as a new run
    assert first["lastRerun"] is None, first
    asked = r.json()["lastRerun"]
    assert (asked["by"], asked["from"], asked["onlyFailed"]) == ("admin", None, True), asked
    again = kiok.wait_run(run_id)
    assert again["state"] == "SUCCESS", again
    # The re-run's own times, which the run's first start does not give.
    rerun = again["lastRerun"]
    assert rerun["requestedAt"] == asked["requestedAt"] >= first["endedAt"], (rerun, first)
    assert rerun["requestedAt"] <= rerun["startedAt"] <= again["endedAt"], rerun
    assert again["startedAt"] == first["startedAt"], again
    assert again["runId"] == run_id
    tasks = again["tasks"]
    assert (tasks["extract"]["state"], tasks["extract"]["attempt"]) == ("SUCCESS", 1)  # kept, not re-run
    assert (tasks["load"]["state"], tasks["load"]["attempt"]) == ("SUCCESS", 2)  # attempt numbers go on
    assert (tasks["report"]["state"], tasks["report"]["attempt"]) == ("SUCCESS", 1)
    assert (task_tmp_path / "extract").read_text() == "extract 1\n"
    assert (task_tmp_path / "load").read_text() == "load 1\nload 2\n"
    assert (task_tmp_path / "report").read_text() == "report 1\n"
    runlog = kiok.log(run_id, "__run__")
    assert "re-run requested by admin of failed tasks; to run again: load, report" in runlog, runlog

    # From a chosen task: that task and everything downstream, even though they succeeded.
    r = kiok.api("POST", f"/api/v1/runs/{run_id}/rerun", json={"from": "extract"})
    assert r.status_code == 200, r.text
    assert r.json()["rerun"] == ["extract", "load", "report"]
    third = kiok.wait_run(run_id)
    assert third["state"] == "SUCCESS", third
    assert [third["tasks"][t]["attempt"] for t in ("extract", "load", "report")] == [2, 3, 2]
    assert "re-run requested by admin from extract" in kiok.log(run_id, "__run__")

    # Nothing failed any more: only-failed has nothing to do.
    r = kiok.api("POST", f"/api/v1/runs/{run_id}/rerun", json={"onlyFailed": True})
    assert r.status_code == 409 and "nothing to re-run" in r.json()["error"]["message"], r.text


def test_rerun_refusals(shared_kiok: Standalone, task_tmp_path: Path) -> None:
    kiok = shared_kiok
    dag = kiok.register(
        """
dag: {id: rerun_refusals, params: {dir: /nonexistent}}
tasks:
  - id: wait
    script: while [ ! -e ${params.dir}/go ]; do sleep 0.05; done
"""
    )
    run_id = kiok.trigger(dag, {"dir": str(task_tmp_path)})
    kiok.wait_for(lambda: kiok.run(run_id)["tasks"]["wait"]["state"] == "RUNNING", 30, "task running")
    r = kiok.api("POST", f"/api/v1/runs/{run_id}/rerun", json={})
    assert r.status_code == 409 and "still RUNNING" in r.json()["error"]["message"], r.text
    (task_tmp_path / "go").touch()
    assert kiok.wait_run(run_id)["state"] == "SUCCESS"

    r = kiok.api("POST", f"/api/v1/runs/{run_id}/rerun", json={"from": "nope"})
    assert r.status_code == 400 and "nope" in r.json()["error"]["message"], r.text
    r = kiok.api("POST", f"/api/v1/runs/{run_id}/rerun", json={"from": "wait", "bogus": 1})
    assert r.status_code in (400, 422), r.text
    r = kiok.api("POST", "/api/v1/runs/rerun_refusals-1-999999/rerun", json={})
    assert r.status_code == 404, r.text

    # --all on a run that succeeded runs every task again.
    r = kiok.api("POST", f"/api/v1/runs/{run_id}/rerun", json={"onlyFailed": False})
    assert r.status_code == 200 and r.json()["rerun"] == ["wait"], r.text
    run = kiok.wait_run(run_id)
    assert run["state"] == "SUCCESS" and run["tasks"]["wait"]["attempt"] == 2, run

    # A deleted DAG runs no more: not by a re-run of one of its runs either (409, nothing
    # queued); registered again, its runs can be re-run.
    assert kiok.api("DELETE", f"/api/v1/dags/{dag}").status_code == 200
    r = kiok.api("POST", f"/api/v1/runs/{run_id}/rerun", json={"onlyFailed": False})
    assert r.status_code == 409 and "was deleted" in r.json()["error"]["message"], r.text
    assert kiok.run(run_id)["reruns"] == 1
    kiok.register(
        """
dag: {id: rerun_refusals, params: {dir: /nonexistent}}
tasks:
  - {id: wait, script: 'true'}
"""
    )
    r = kiok.api("POST", f"/api/v1/runs/{run_id}/rerun", json={"onlyFailed": False})
    assert r.status_code == 200, r.text
    assert kiok.wait_run(run_id)["tasks"]["wait"]["attempt"] == 3


def test_a_rerun_waits_for_its_dags_max_active_runs(shared_kiok: Standalone, task_tmp_path: Path) -> None:
    """A re-run is queued like a new run: while another run of a DAG allowed one runs, the
    re-run waits (PENDING, saying why) and starts once that run has ended (found by the
    simulator: it used to be RUNNING at once, two runs of the DAG together)."""
    kiok = shared_kiok
    dag = kiok.register(
        """
dag: {id: rerun_queued, max_active_runs: 1, params: {dir: /nonexistent, hold: "no"}}
tasks:
  - id: t
    script: |
      if [ "${params.hold}" = yes ]; then while [ ! -e ${params.dir}/go ]; do sleep 0.05; done; fi
      [ "${params.hold}" = yes ] || [ -e ${params.dir}/ok ]
"""
    )
    failed = kiok.trigger(dag, {"dir": str(task_tmp_path)})
    assert kiok.wait_run(failed)["state"] == "FAILED"
    holding = kiok.trigger(dag, {"dir": str(task_tmp_path), "hold": "yes"})
    kiok.wait_for(lambda: kiok.run(holding)["tasks"]["t"]["state"] == "RUNNING", 30, "the other run")
    (task_tmp_path / "ok").touch()

    r = kiok.api("POST", f"/api/v1/runs/{failed}/rerun", json={})
    assert r.status_code == 200 and r.json()["state"] == "PENDING", r.text
    waiting = kiok.wait_for(lambda: kiok.run(failed).get("waiting"), 30, "the re-run to say why it waits")
    assert waiting == "max_active_runs (1) reached for DAG rerun_queued", waiting
    assert kiok.run(failed)["state"] == "PENDING"

    (task_tmp_path / "go").touch()
    other = kiok.wait_run(holding)
    again = kiok.wait_run(failed)
    assert (other["state"], again["state"]) == ("SUCCESS", "SUCCESS")
    assert again["tasks"]["t"]["attempt"] == 2
    # Both times from the worker's clock (a run's own end is the master's: ms apart at best).
    assert again["tasks"]["t"]["startedAt"] >= other["tasks"]["t"]["endedAt"], (again, other)


def test_the_dashboard_times_a_running_rerun_from_its_start(
    shared_kiok: Standalone, task_tmp_path: Path
) -> None:
    """A re-run keeps the run's first start; the dashboard's running list shows how long the
    re-run has been going, as the run's ``lastRerun.startedAt`` says."""
    kiok = shared_kiok
    marker = task_tmp_path / "go"
    dag = kiok.register(
        "dag: {id: rerun_dash, params: {m: /nonexistent}}\n"
        "tasks: [{id: t, script: 'test -e ${params.m} || exit 3; sleep 60'}]\n"
    )
    run_id = kiok.trigger(dag, {"m": str(marker)})
    first = kiok.wait_run(run_id)
    assert first["state"] == "FAILED", first
    marker.touch()
    assert kiok.api("POST", f"/api/v1/runs/{run_id}/rerun", json={}).status_code == 200
    again = kiok.wait_for(
        lambda: (r := kiok.run(run_id))["tasks"]["t"]["state"] == "RUNNING" and r, 30, "the re-run to start"
    )
    started = again["lastRerun"]["startedAt"]
    assert started is not None and started > first["startedAt"], again
    running = kiok.api("GET", "/api/v1/dashboard").json()["running"]
    assert [r["startedAt"] for r in running if r["runId"] == run_id] == [started], running
    assert kiok.api("POST", f"/api/v1/runs/{run_id}/cancel").status_code == 200
    kiok.wait_run(run_id)


def test_a_rerun_task_gets_its_retries_again(shared_kiok: Standalone, task_tmp_path: Path) -> None:
    """``retries: 1``: attempts 1 and 2 fail and the run fails; a re-run gets its retry again
    (as Airflow's clear gives it back): attempts 3 and 4 run, attempt numbers going on. Before,
    retries were counted from attempt 1 and the re-run's attempt 3 failed for good."""
    kiok = shared_kiok
    dag = kiok.register(
        """
dag: {id: rerun_retries, params: {dir: /nonexistent}}
tasks:
  - id: flaky
    retries: 1
    retry_delay: 0s
    script: echo "$KIOK_ATTEMPT" >> ${params.dir}/attempts; exit 1
"""
    )
    run_id = kiok.trigger(dag, {"dir": str(task_tmp_path)})
    first = kiok.wait_run(run_id)
    assert first["state"] == "FAILED" and first["tasks"]["flaky"]["attempt"] == 2, first
    assert kiok.api("POST", f"/api/v1/runs/{run_id}/rerun", json={}).status_code == 200
    again = kiok.wait_run(run_id)
    assert again["state"] == "FAILED" and again["tasks"]["flaky"]["attempt"] == 4, again
    assert (task_tmp_path / "attempts").read_text().split() == ["1", "2", "3", "4"]
