"""Nothing is lost on a crash: kill -9 of `kiok standalone` mid-run, then restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kiok.testing.process import Standalone


def test_kill9_mid_run_resumes_without_rerunning_finished_tasks(
    standalone_factory: Any, task_tmp_path: Path
) -> None:
    # Ship log batches every 100 ms so the test can see output stored before the kill.
    kiok: Standalone = standalone_factory(env={"KIOK_JOBLOG_WORKER_BATCH_INTERVAL_MS": "100"})
    marks = task_tmp_path
    kiok.register(
        f"""
dag: {{id: crashy}}
tasks:
  - {{id: first, script: 'echo ran >> {marks}/first; echo first-output'}}
  - id: slow
    requires: [first]
    script: 'echo "start $KIOK_ATTEMPT" >> {marks}/slow; echo slow-$KIOK_ATTEMPT; sleep 2'
  - {{id: last, requires: [slow], script: 'echo ran >> {marks}/last'}}
"""
    )
    done_before = kiok.trigger("crashy")
    kiok.wait_run(done_before)
    (marks / "first").unlink()
    (marks / "slow").unlink()
    (marks / "last").unlink()

    run_id = kiok.trigger("crashy")
    kiok.wait_for(lambda: (marks / "slow").exists(), 20, "the slow task to start")
    kiok.wait_for(
        lambda: kiok.run(run_id)["tasks"]["slow"]["state"] == "RUNNING", 10, "slow reported RUNNING"
    )
    kiok.wait_for(lambda: "slow-1" in kiok.log(run_id, "slow"), 10, "the first attempt's output to be stored")
    kiok.kill9()

    kiok.start()
    # Registered DAGs, finished runs and their logs survive.
    assert kiok.api("GET", "/api/v1/dags/crashy").status_code == 200
    finished = kiok.run(done_before)
    assert finished["state"] == "SUCCESS"
    assert kiok.log(done_before, "first") == "first-output\n"
    # The interrupted run resumes: first is not re-run, slow runs again as attempt 2.
    run = kiok.wait_run(run_id, timeout_s=30)
    assert run["state"] == "SUCCESS", run
    assert run["tasks"]["first"]["attempt"] == 1
    assert run["tasks"]["slow"]["attempt"] == 2
    assert (marks / "first").read_text() == "ran\n"
    assert (marks / "slow").read_text() == "start 1\nstart 2\n"
    assert (marks / "last").read_text() == "ran\n"
    log = kiok.log(run_id, "slow")
    assert "slow-1" in log and "[kiok] --- attempt 2 ---" in log and log.rstrip().endswith("slow-2")


def test_acknowledged_writes_survive_kill9(kiok: Standalone) -> None:
    for i in range(20):
        kiok.register(f"dag: {{id: d{i}}}\ntasks: [{{id: t, script: 'true'}}]\n")
    paused = kiok.api("POST", "/api/v1/dags/d3/pause")
    assert paused.status_code == 200
    kiok.kill9()
    kiok.start()
    dags = {d["dagId"]: d for d in kiok.api("GET", "/api/v1/dags").json()["dags"]}
    assert {f"d{i}" for i in range(20)} <= set(dags)
    assert dags["d3"]["paused"] is True
