"""A master and workers as separate processes: losing a driver loses nothing, fences keep a
cut-off driver from committing, a restarted master keeps the runs' drivers, and the
cluster-wide concurrency cap holds across workers."""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from kiok.testing.process import Master, WorkerProcess
from tests.integration.relayed import relayed

FAST = {"KIOK_WORKER_HEARTBEAT_TIMEOUT_MS": "2000", "KIOK_WORKER_HEARTBEAT_INTERVAL_MS": "300"}


class Cluster:
    def __init__(self, root: Path, workers: int, master_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.master = Master(root / "master", {**FAST, **(master_env or {})}).start()
        token_env = {**FAST, "KIOK_JOBLOG_WORKER_BATCH_INTERVAL_MS": "100"}
        self.workers = {}
        for i in range(workers):
            wid = f"w{i + 1}"
            w = WorkerProcess(
                root / wid,
                self.master.internal_address,
                wid,
                {**token_env, "KIOK_WORKER_JOIN_TOKEN": self.master.join_token()},
            )
            self.workers[wid] = w.start()
        self.master.wait_open()

    def stop(self) -> None:
        for w in self.workers.values():
            if w.proc is not None and w.proc.poll() is None:
                w.signal(signal.SIGCONT)
            w.stop()
        self.master.stop()


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Cluster] = []

    def make(workers: int = 2, master_env: dict[str, str] | None = None) -> Cluster:
        c = Cluster(tmp_path, workers, master_env)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def three_step_dag(dag_id: str, marks: Path, sleep_s: float) -> str:
    return f"""
dag: {{id: {dag_id}}}
tasks:
  - {{id: first, script: 'echo "$KIOK_ATTEMPT" >> {marks}/first'}}
  - id: slow
    requires: [first]
    script: 'echo "$KIOK_ATTEMPT $(cat /proc/sys/kernel/hostname)" >> {marks}/slow; sleep {sleep_s}'
  - {{id: last, requires: [slow], script: 'echo "$KIOK_ATTEMPT" >> {marks}/last'}}
"""


def test_kill9_of_the_driver_reassigns_within_the_heartbeat_timeout(
    cluster_factory: Any, task_tmp_path: Path
) -> None:
    c: Cluster = cluster_factory()
    marks = task_tmp_path  # written by tasks: run as the task user, away from pytest's tmp_path
    c.master.register(three_step_dag("failover", marks, 3))
    run_id = c.master.trigger("failover")
    run = c.master.wait_for(
        lambda: (r := c.master.run(run_id))["tasks"]["slow"]["state"] == "RUNNING" and r, 20, "slow to run"
    )
    driver = run["worker"]
    other = next(w for w in c.workers if w != driver)
    killed_at = time.monotonic()
    c.workers[driver].kill9()
    c.master.wait_for(lambda: c.master.run(run_id)["worker"] == other, 10, "reassignment")
    assert time.monotonic() - killed_at <= 2.0 + 1.0 + 0.3  # heartbeat timeout + 1 s (+ polling)
    done = c.master.wait_run(run_id, timeout_s=30)
    assert done["state"] == "SUCCESS"
    assert done["tasks"]["first"]["attempt"] == 1 and done["tasks"]["first"]["worker"] == driver
    assert done["tasks"]["slow"]["attempt"] == 2 and done["tasks"]["slow"]["worker"] == other
    assert (marks / "first").read_text() == "1\n"  # a finished task is never run again
    assert (marks / "last").read_text() == "1\n"
    assert f"assigned to worker {other}" in c.master.log(run_id, "__run__")


def test_a_frozen_driver_comes_back_fenced(cluster_factory: Any, task_tmp_path: Path) -> None:
    c: Cluster = cluster_factory()
    marks = task_tmp_path  # written by tasks: run as the task user, away from pytest's tmp_path
    c.master.register(three_step_dag("frozen", marks, 1.5))
    run_id = c.master.trigger("frozen")
    run = c.master.wait_for(
        lambda: (r := c.master.run(run_id))["tasks"]["slow"]["state"] == "RUNNING" and r, 20, "slow to run"
    )
    driver = run["worker"]
    c.workers[driver].signal(signal.SIGSTOP)  # its task keeps running (own session) and ends
    done = c.master.wait_run(run_id, timeout_s=30)
    assert done["state"] == "SUCCESS" and done["worker"] != driver
    c.workers[driver].signal(signal.SIGCONT)
    # Its late SUCCESS for attempt 1 arrives under the old fence: rejected and counted.
    after = c.master.wait_for(
        lambda: (r := c.master.run(run_id))["staleReports"] >= 1 and r, 15, "stale report"
    )
    assert after["state"] == "SUCCESS"
    assert after["tasks"]["slow"] == done["tasks"]["slow"]
    assert "stale fence" in c.master.log(run_id, "__run__")
    metrics = c.master.api("GET", "/metrics").text
    assert "kiok_stale_reports_total" in metrics
    # The cut-off worker reconnects and is usable again, holding no run.
    c.master.wait_for(lambda: c.workers[driver].status()["activeRuns"] == 0, 10, "the old driver to let go")
    assert c.workers[driver].status()["masterConnection"] == "connected"


def test_a_restarted_master_keeps_the_drivers_and_their_reports(
    cluster_factory: Any, task_tmp_path: Path
) -> None:
    c: Cluster = cluster_factory(workers=1)
    marks = task_tmp_path  # written by tasks: run as the task user, away from pytest's tmp_path
    c.master.register(three_step_dag("survivor", marks, 2))
    run_id = c.master.trigger("survivor")
    c.master.wait_for(lambda: c.master.run(run_id)["tasks"]["slow"]["state"] == "RUNNING", 20, "slow to run")
    c.master.kill9()
    c.master.start()  # same ports and data; the worker reconnects by itself
    c.master.wait_open()
    done = c.master.wait_run(run_id, timeout_s=30)
    assert done["state"] == "SUCCESS"
    assert done["tasks"]["slow"]["attempt"] == 1  # kept its driver: nothing re-ran
    assert (marks / "slow").read_text().count("\n") == 1


def test_the_global_concurrency_cap_holds_across_workers(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(master_env={"KIOK_SCHEDULER_MAX_GLOBAL_CONCURRENCY": "1"})
    c.master.register(
        "dag: {id: capped}\ntasks:\n  - {id: a, script: 'sleep 0.5'}\n  - {id: b, script: 'sleep 0.5'}\n"
    )
    runs = [c.master.trigger("capped") for _ in range(2)]
    spans = []
    workers = set()
    for run_id in runs:
        run = c.master.wait_run(run_id, timeout_s=30)
        assert run["state"] == "SUCCESS"
        workers.add(run["worker"])
        spans += [(t["startedAt"], t["endedAt"]) for t in run["tasks"].values()]
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, spans  # never two task bodies at once, cluster-wide


def test_the_global_concurrency_cap_holds_across_a_master_restart(cluster_factory: Any) -> None:
    """The restarted master counted the permits of attempts already running from 0 (they
    were granted by its previous life): with a cap of 1, a second task started at once."""
    c: Cluster = cluster_factory(workers=1, master_env={"KIOK_SCHEDULER_MAX_GLOBAL_CONCURRENCY": "1"})
    c.master.register("dag: {id: capped, max_active_runs: 2}\ntasks:\n  - {id: a, script: 'sleep 3'}\n")
    first = c.master.trigger("capped")
    c.master.wait_for(lambda: c.master.run(first)["tasks"]["a"]["state"] == "RUNNING", 20, "a to run")
    c.master.kill9()
    c.master.start()  # same ports and data; the worker reconnects, its task still running
    c.master.wait_open()
    second = c.master.trigger("capped")
    spans = []
    for run_id in (first, second):
        run = c.master.wait_run(run_id, timeout_s=30)
        assert run["state"] == "SUCCESS", run
        spans.append((run["tasks"]["a"]["startedAt"], run["tasks"]["a"]["endedAt"]))
    spans.sort()
    assert spans[0][1] <= spans[1][0], spans  # never two task bodies at once


def test_an_offer_a_frozen_worker_cannot_answer_is_a_refusal_within_its_timeout(
    cluster_factory: Any, task_tmp_path: Path
) -> None:
    """Every run waiting for a driver waits behind an offer, so one to a worker frozen a
    moment ago (it still looks alive) must not hold them long: it counts as refused after
    one and a half heartbeat intervals (1.5 s here; it was 3 s). The frozen worker's late
    acceptance commits nothing: the run is offered again and runs once."""
    slow_loss = {"KIOK_WORKER_HEARTBEAT_INTERVAL_MS": "1000", "KIOK_WORKER_HEARTBEAT_TIMEOUT_MS": "20000"}
    c: Cluster = cluster_factory(workers=1, master_env=slow_loss)
    marks = task_tmp_path  # written by tasks: run as the task user, away from pytest's tmp_path
    c.master.register(three_step_dag("unanswered", marks, 0))
    c.workers["w1"].signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        run_id = c.master.trigger("unanswered")
        refused = "worker w1 refused the run: worker w1 did not answer the offer"

        def refusal_logged() -> str | None:
            text = c.master.log(run_id, "__run__")
            return text if refused in text else None

        log = c.master.wait_for(refusal_logged, 20, "the refusal")
        waited_s = time.monotonic() - started  # the run log's times are to the second
    finally:
        c.workers["w1"].signal(signal.SIGCONT)
    assert 1.4 <= waited_s < 2.9, (waited_s, log)
    done = c.master.wait_run(run_id, timeout_s=30)
    assert done["state"] == "SUCCESS" and {t["attempt"] for t in done["tasks"].values()} == {1}
    assert (marks / "first").read_text() == "1\n"  # started once, by the driver that held the run


@pytest.mark.parametrize("stop", ["kill -9", "SIGTERM", "kill -9, a forged outbox file"])
def test_a_worker_restarted_with_a_report_waiting_keeps_the_run_and_runs_nothing_again(
    tmp_path: Path, task_tmp_path: Path, stop: str
) -> None:
    """Found by the failover probe (session 27): a worker cut off from the master when its
    run's last task ended, then restarted on its data directory, claimed nothing in its first
    hello (the outbox's fences were readable only with keys a WELCOME brings), so the master
    gave the run to a new driver at once and the task that had succeeded ran again."""
    with relayed(tmp_path, task_tmp_path, {}) as r:
        r.gates["a"].touch()
        run_id = r.trigger()
        r.cut_and_finish(run_id)
        if stop.startswith("kill -9"):
            r.worker.kill9()
        else:
            r.worker.stop()
        (outbox,) = {p.parent for p in (tmp_path / "w1").glob("**/outbox/0*")}  # b's end waits there
        if stop.endswith("forged outbox file"):
            # A fence no hello may carry: every hello was refused, the worker never got back in.
            header = msgpack.packb(["", 1, 1])
            (outbox / "0000000000000090.rpf").write_bytes(
                len(header).to_bytes(2, "big") + header + b"\x01" * 60
            )
        r.worker.spawn()  # with its saved credential; the relay refuses it until mended
        r.relay.mend()
        done = r.master.wait_run(run_id, 60)
        r.assert_ran_once(done)
        assert done["staleReports"] == 0, done
