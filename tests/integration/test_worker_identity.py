"""A worker's identity cannot be taken over, and a worker is trusted only for the runs it
drives: a real ``kiok master`` and real ``kiok worker`` processes on 127.0.0.1, attacked
with raw internal-protocol frames (``socket`` + msgpack) where a worker would misbehave.

- a spent join token, with the worker's public id, mints no second credential;
- garbage hellos from the worker's own address keep no admitted worker out;
- a second, legitimately admitted worker cannot append to a run it does not drive, nor to a
  finished run;
- revoking a worker stops its tasks within seconds and its run finishes elsewhere;
- a stale credential file next to a new join token is replaced once the token is accepted.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kiok.testing.process import Master
from tests.integration.test_cluster_admission import (
    Cluster,
    admitted_worker,
    cluster_worker,
    connection,
    dial,
    frame,
    hello,
    read_reply,
    refusal,
    said_revoked,
    shutdown,
    task_running,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop_all()


def admitted_ids(m: Master) -> dict[str, bool]:
    r = m.api("GET", "/api/v1/admin/workers")
    assert r.status_code == 200, r.text
    return {w["id"]: w["revoked"] for w in r.json()["workers"]}


# --- a join token is spent once ----------------------------------------------------------------


def test_a_spent_join_token_does_not_take_over_the_worker_that_used_it(cluster: Cluster) -> None:
    m = cluster.master()
    token = m.join_token()
    w1 = cluster.worker(m, "w1", token=token)
    m.wait_open(10)
    worker_id = w1.status()["instanceId"]  # public: the status port needs no authentication
    assert worker_id == "w1"

    # The old token plus the public id: refused, with no credential handed out.
    reply = refusal(m.internal_port, hello(worker_id, joinToken=token))
    assert reply["code"] == "unauthenticated", reply
    assert "already used" in reply["reason"] and "new join token" in reply["reason"], reply
    assert "credential" not in reply

    # The real worker was not displaced, and its credential still admits it after a restart.
    assert connection(w1) == "connected"
    assert (cluster_worker(m, "w1") or {}).get("connected") is True
    shutdown(w1, grace_s=12)
    w1.start(timeout_s=15)
    assert connection(w1) == "connected"
    assert admitted_ids(m) == {"w1": False}
    dag = m.register("dag: {id: after_reuse}\ntasks:\n  - {id: t, script: 'echo ok'}\n")
    run = m.wait_run(m.trigger(dag), 15)
    assert run["state"] == "SUCCESS" and run["worker"] == "w1", run


# --- failed authentications are limited per (address, worker id) --------------------------------


def test_garbage_hellos_from_the_same_host_keep_no_admitted_worker_out(cluster: Cluster) -> None:
    m = cluster.master()
    w1 = admitted_worker(cluster, m, "w1")
    m.wait_open(10)

    for i in range(20):  # random ids, forged credentials and tokens, all from 127.0.0.1
        ghost = f"ghost-{secrets.token_hex(4)}"
        forged = hello(ghost, credential="kiok_cred_v1.forged") if i % 2 else hello(ghost, joinToken="x")
        reply = refusal(m.internal_port, forged)
        assert reply["code"] == "unauthenticated", (i, reply)
    for i in range(8):  # and hellos naming w1 itself: that (address, id) is limited...
        reply = refusal(m.internal_port, hello("w1", credential=f"kiok_cred_v1.forged{i}"))
        assert reply["code"] == ("unauthenticated" if i < 5 else "rate_limited"), (i, reply)

    # ...yet the real w1, presenting its valid credential, is let in at once after a restart.
    shutdown(w1, grace_s=12)
    w1.start(timeout_s=10)
    assert connection(w1) == "connected"
    m.wait_open(10)
    assert httpx.get(m.url + "/readyz").status_code == 200
    assert m.api("GET", "/api/v1/dags").status_code == 200

    # A new worker joining with a token from the same address is not held back either.
    w2 = admitted_worker(cluster, m, "w2")
    assert connection(w2) == "connected"


def test_garbage_hellos_naming_a_worker_about_to_join_do_not_keep_it_from_joining(cluster: Cluster) -> None:
    """A task on a worker's host can send hellos naming that worker's id from its address: its
    (address, id) was then rate limited, and the worker joining (or re-joining) with a valid
    join token was refused for as long as the hellos kept coming."""
    m = cluster.master()
    admitted_worker(cluster, m, "w1")
    m.wait_open(10)
    for i in range(8):
        reply = refusal(m.internal_port, hello("w3", joinToken=f"kiok_join_v1.forged{i}"))
        assert reply["code"] == ("unauthenticated" if i < 5 else "rate_limited"), (i, reply)
    w3 = admitted_worker(cluster, m, "w3")
    assert connection(w3) == "connected"
    reply = refusal(m.internal_port, hello("w3", joinToken="kiok_join_v1.forged"))
    assert reply["code"] == "unauthenticated", reply  # what cannot work is still turned away


# --- log batches only from the run's driver, under its fence, while it runs --------------------


class RawWorker:
    """A legitimately admitted worker speaking the protocol by hand."""

    def __init__(self, m: Master, worker_id: str) -> None:
        self.sock = dial(m.internal_port)
        self.sock.sendall(hello(worker_id, joinToken=m.join_token()))
        welcome = read_reply(self.sock)
        assert welcome["t"] == "welcome" and welcome["credential"].startswith("kiok_cred_v1."), welcome
        self._ids = iter(range(1000, 10**6))

    def send(self, kind: str, **fields: Any) -> None:
        self.sock.sendall(frame({"v": 1, "t": kind, "id": 0, **fields}))

    def sync(self) -> None:
        """Return once the master has handled every frame sent before (it answers a PERMIT
        after them, in order); the permit is handed straight back."""
        request = next(self._ids)
        self.sock.sendall(frame({"v": 1, "t": "permit", "id": request}))
        while True:
            reply = read_reply(self.sock)
            if reply["t"] == "permit_grant" and reply["id"] == request:
                break
        self.send("permit_free")

    def close(self) -> None:
        self.sock.close()


def fence_of(m: Master, run_id: str) -> tuple[int, int]:
    found = re.findall(r"assigned to worker \S+ \(fence (\d+)/(\d+)\)", m.log(run_id, "__run__"))
    assert found, m.log(run_id, "__run__")
    term, epoch = found[-1]
    return int(term), int(epoch)


def test_a_worker_cannot_append_to_a_run_it_does_not_drive_nor_to_a_finished_run(cluster: Cluster) -> None:
    m = cluster.master()
    admitted_worker(cluster, m, "w1")
    m.wait_open(10)
    quick = m.register("dag: {id: done}\ntasks:\n  - {id: t, script: 'echo real'}\n")
    done = m.wait_run(m.trigger(quick), 15)
    assert done["state"] == "SUCCESS" and done["worker"] == "w1", done
    finished_id = done["runId"]
    finished_logs = {task: m.log(finished_id, task) for task in ("t", "__run__")}
    assert finished_logs["t"] == "real\n"

    busy = m.register("dag: {id: busy}\ntasks:\n  - {id: t, script: 'echo begin; sleep 6; echo end'}\n")
    running = m.trigger(busy)
    wait_until(lambda: task_running(m, running) and m.log(running, "t") == "begin\n", 15, "its first line")
    running_fence = fence_of(m, running)

    intruder = RawWorker(m, "w2")  # admitted with a join token of its own
    try:
        intruder.send("heartbeat", free=1, draining=False, runs=[])
        for run_id, (term, epoch) in ((running, running_fence), (finished_id, fence_of(m, finished_id))):
            for task in ("t", "__run__"):
                for fence in ((term, epoch), (term, epoch + 1), (term + 1, epoch)):
                    batch = {"task": task, "data": b"FORGED\n", "final": False}
                    intruder.send("log", run=run_id, term=fence[0], epoch=fence[1], **batch)
            intruder.send("log", run=run_id, task="t", data=b"FORGED\n", final=False)  # no fence at all
        failed = {"t": {"state": "FAILED", "attempt": 1, "worker": "w2", "error": "FORGED"}}
        for _ in range(3):  # nor can it report for the run (noted once in its run log)
            intruder.send("report", run=running, term=running_fence[0], epoch=running_fence[1], tasks=failed)
        intruder.sync()  # the batches were handled; the connection stays open (nothing else harmed)

        assert {task: m.log(finished_id, task) for task in ("t", "__run__")} == finished_logs
        assert m.log(running, "t") == "begin\n"
        assert "FORGED" not in m.log(running, "__run__")
        assert m.log(running, "__run__").count("rejected a report from worker w2") == 1
        assert task_running(m, running), m.run(running)
    finally:
        intruder.close()

    run = m.wait_run(running, 20)
    assert run["state"] == "SUCCESS" and run["worker"] == "w1", run
    assert m.log(running, "t") == "begin\nend\n"  # the real driver's batches still count
    assert "FORGED" not in m.log(running, "__run__")
    assert "log batches for run" in m.read_log() and "refused" in m.read_log()
    metrics = m.api("GET", "/metrics").text
    counted = re.search(r"^kiok_stale_log_batches_total (\S+)$", metrics, re.M)
    assert counted and float(counted.group(1)) >= 14, metrics


# --- revocation stops the worker's tasks; its run finishes elsewhere ----------------------------


def processes_with(needle: str) -> list[int]:
    """Pids whose command line contains ``needle``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry))
    return found


def test_revoking_a_worker_stops_its_tasks_and_its_run_finishes_elsewhere(cluster: Cluster) -> None:
    m = cluster.master()
    w1 = admitted_worker(cluster, m, "w1")
    m.wait_open(10)
    seconds = f"{4000 + secrets.randbelow(5000)}.{secrets.randbelow(100)}"  # names this test's process
    script = f'if [ "$KIOK_ATTEMPT" = 1 ]; then sleep {seconds}; fi; echo attempt-$KIOK_ATTEMPT'
    dag = m.register(f"dag: {{id: revoked}}\ntasks:\n  - {{id: t, script: '{script}'}}\n")
    run_id = m.trigger(dag)
    pids: list[int] = []
    try:
        wait_until(lambda: task_running(m, run_id), 15, "the task to start on w1")
        pids = wait_until(lambda: processes_with(f"sleep {seconds}"), 10, "the task's process")
        assert m.run(run_id)["worker"] == "w1"
        admitted_worker(cluster, m, "w2")

        r = m.api("DELETE", "/api/v1/admin/workers/w1")
        assert r.status_code == 200, r.text
        wait_until(lambda: not processes_with(f"sleep {seconds}"), 5, "the revoked worker's task to stop")
        wait_until(lambda: w1.status()["activeRuns"] == 0, 5, "w1 to drop the run")
        # Told it was revoked (it tries its spent join token at once, "connecting" meanwhile).
        wait_until(lambda: said_revoked(w1), 5, "w1 to say it was revoked")

        run = m.wait_run(run_id, 20)
        assert run["state"] == "SUCCESS" and run["worker"] == "w2", run
        assert run["tasks"]["t"]["attempt"] == 2 and run["tasks"]["t"]["worker"] == "w2", run["tasks"]
        assert m.log(run_id, "t").endswith("attempt-2\n")
    finally:
        for pid in pids:  # do not leave the sleeper behind when the test fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --- a stale credential file next to a new join token ------------------------------------------


def test_a_stale_credential_is_replaced_by_a_new_join_token(cluster: Cluster, tmp_path: Path) -> None:
    m = cluster.master()
    w1 = cluster.worker(m, "w1", token=m.join_token())
    m.wait_open(10)
    cred_file = tmp_path / "w1" / "worker-credential"
    stale = cred_file.read_text().strip()

    # A valid credential means the join token is never sent: a fresh token configured next to
    # it stays unspent (another worker can still use it).
    spare = m.join_token()
    shutdown(w1, grace_s=12)
    w1.extra_env["KIOK_WORKER_JOIN_TOKEN"] = spare
    w1.start(timeout_s=15)
    assert connection(w1) == "connected" and cred_file.read_text().strip() == stale
    w3 = cluster.worker(m, "w3", token=spare)
    assert connection(w3) == "connected"

    # Revoked: the saved credential is stale now. With a new token, w1 is admitted again and
    # the new credential replaces the stale file.
    r = m.api("DELETE", "/api/v1/admin/workers/w1")
    assert r.status_code == 200, r.text
    shutdown(w1, grace_s=12)
    w1.extra_env["KIOK_WORKER_JOIN_TOKEN"] = m.join_token()
    w1.start(timeout_s=15)
    assert connection(w1) == "connected"
    fresh = cred_file.read_text().strip()
    assert fresh != stale and fresh.startswith("kiok_cred_v1."), fresh
    assert cred_file.stat().st_mode & 0o777 == 0o600
    assert admitted_ids(m) == {"w1": False, "w3": False}

    # The stale credential admits nobody any more.
    reply = refusal(m.internal_port, hello("w1", credential=stale))
    assert reply["code"] == "unauthenticated" and "wrong credential" in reply["reason"], reply
    assert connection(w1) == "connected"
