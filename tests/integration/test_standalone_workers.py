"""More workers joining a ``kiok standalone``: it serves the internal protocol like a master
(``kiok.master.internal.port``), admits a worker with a join token, and routes runs to it by
labels; its own worker and the joined ones share ``kiok.scheduler.max.global.concurrency``."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiok.testing.process import Standalone, WorkerProcess


def test_a_worker_joins_a_standalone_and_shares_its_global_task_limit(
    tmp_path: Path, task_tmp_path: Path, processes: list[Standalone]
) -> None:
    kiok = Standalone(
        tmp_path / "standalone",
        {"KIOK_WORKER_LABELS": "local", "KIOK_SCHEDULER_MAX_GLOBAL_CONCURRENCY": "1"},
    )
    processes.append(kiok.start())
    token = kiok.join_token()
    # A worker naming the standalone's own worker's id is refused before the token is spent
    # (admitted, it would replace that worker in the coordinator and claim its runs).
    [own] = [w["id"] for w in kiok.api("GET", "/api/v1/cluster").json()["workers"]]
    with_token = {"KIOK_WORKER_JOIN_TOKEN": token}
    impostor = WorkerProcess(tmp_path / "impostor", kiok.internal_address, own, with_token)
    processes.append(impostor)
    with pytest.raises((TimeoutError, RuntimeError)):
        impostor.start(timeout_s=1)
    kiok.wait_for(lambda: "standalone's own worker's" in impostor.read_log(), 10, "the impostor refused")
    impostor.stop()
    joined = WorkerProcess(
        tmp_path / "joined",
        kiok.internal_address,
        "joined",
        {"KIOK_WORKER_JOIN_TOKEN": token, "KIOK_WORKER_LABELS": "remote"},
    )
    processes.append(joined.start())
    workers = {w["id"] for w in kiok.api("GET", "/api/v1/cluster").json()["workers"]}
    assert workers == {own, "joined"}, workers  # the token was still good

    gate = task_tmp_path / "gate"  # where the tasks' users may look
    local = kiok.register(
        f"""
dag: {{id: on_local, labels: [local]}}
tasks:
  - {{id: hold, script: 'while [ ! -e {gate} ]; do sleep 0.05; done'}}
"""
    )
    remote = kiok.register(
        """
dag: {id: on_remote, labels: [remote]}
tasks:
  - {id: quick, script: 'echo on the joined worker'}
"""
    )
    held = kiok.trigger(local)
    kiok.wait_for(lambda: kiok.run(held)["tasks"]["hold"]["state"] == "RUNNING", 30, "hold running")
    waiting = kiok.trigger(remote)
    # The one global permit is the standalone's worker's: the joined worker's task waits for it.
    kiok.wait_for(lambda: kiok.run(waiting)["worker"] == "joined", 30, "the run on the joined worker")
    kiok.wait_for(
        lambda: kiok.run(waiting)["tasks"]["quick"]["state"] != "PENDING", 30, "the joined worker's task"
    )
    gate.touch()
    hold = kiok.wait_run(held)["tasks"]["hold"]
    done = kiok.wait_run(waiting)
    assert done["state"] == "SUCCESS" and done["worker"] == "joined", done
    assert done["tasks"]["quick"]["startedAt"] >= hold["endedAt"], (done, hold)
    log = kiok.api("GET", f"/api/v1/runs/{waiting}/tasks/quick/log").text
    assert "on the joined worker" in log
