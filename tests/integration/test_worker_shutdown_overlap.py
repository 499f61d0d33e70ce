"""A worker that shuts down gives its runs back only once their task processes have ended:
the masters drive a run given back elsewhere at once, and the same task must not run on two
workers at the same time (a task that ignores SIGTERM lives out its kill grace)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from kiok.testing.process import Master, Standalone, WorkerProcess

GRACE_MS = 3000


def test_a_run_given_back_at_shutdown_runs_elsewhere_only_after_its_task_ended(
    tmp_path: Path, task_tmp_path: Path, processes: list[Standalone]
) -> None:
    master = Master(tmp_path / "master")
    processes.append(master.start())
    env = {
        "KIOK_WORKER_SHUTDOWN_DRAIN_TIMEOUT_SECONDS": "1",
        "KIOK_WORKER_TASK_KILL_GRACE_MS": str(GRACE_MS),
    }
    w1 = WorkerProcess(
        tmp_path / "w1", master.internal_address, "w1", {**env, "KIOK_WORKER_JOIN_TOKEN": master.join_token()}
    )
    processes.append(w1.start())
    master.wait_open()
    beats, second = task_tmp_path / "beats", task_tmp_path / "second"
    dag = master.register(
        f"""
dag: {{id: stubborn}}
tasks:
  - id: t
    script: |
      if [ "$KIOK_ATTEMPT" = 1 ]; then
        trap '' TERM
        while :; do date +%s%N >> {beats}; sleep 0.02; done
      fi
      date +%s%N > {second}
"""
    )
    run_id = master.trigger(dag)
    master.wait_for(beats.exists, 30, "the first attempt to start on w1")
    w2 = WorkerProcess(
        tmp_path / "w2", master.internal_address, "w2", {**env, "KIOK_WORKER_JOIN_TOKEN": master.join_token()}
    )
    processes.append(w2.start())

    assert w1.proc is not None
    os.kill(w1.proc.pid, signal.SIGTERM)  # the worker alone: its tasks are in sessions of their own
    run = master.wait_run(run_id, 60)
    assert run["state"] == "SUCCESS", run
    assert run["tasks"]["t"]["attempt"] == 2 and run["tasks"]["t"]["worker"] == "w2", run
    last_beat = int(beats.read_text().split()[-1])
    assert last_beat < int(second.read_text()), "the second attempt started while the first still ran"
    # The first attempt's log ends saying why it stopped (then the second attempt's lines).
    log = master.log(run_id, "t")
    assert "[kiok] attempt 1 stopped by its worker, which is shutting down; process group stopped" in log, log
    separator = log.index("[kiok] --- attempt 2 ---")
    assert log.index("stopped by its worker, which is shutting down") < separator, log
    # ...and the second says the first was given back by a worker that shut down, not lost.
    assert "[kiok] attempt 1 interrupted: its worker w1 shut down; retried as attempt 2" in log, log
    runlog = master.log(run_id, "__run__")
    again = "t attempt 1 interrupted (its worker w1 shut down); running it again as attempt 2"
    assert again in runlog, runlog
    # w1 said goodbye once it had given the run back: dropped at once, not kept as draining.
    master.wait_for(lambda: "worker w1 disconnected: it shut down" in master.read_log(), 10, "w1's goodbye")
