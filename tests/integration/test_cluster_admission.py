"""A real ``kiok master`` with real ``kiok worker`` processes on 127.0.0.1: the readiness gate,
worker admission (join tokens, credentials, refusals, revocation, rate limiting), the
cluster and worker status views, label routing, draining and SIGTERM, and the internal
protocol port defending itself against raw frames sent with ``socket`` + msgpack."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgpack
import pytest

from kiok.testing.process import ADMIN_PASSWORD, Master, Standalone, WorkerProcess

T = TypeVar("T")

pytestmark = pytest.mark.slow

#: Fast heartbeats so losses and drains show within a second or two. A bounded drain keeps
#: teardown short should a test fail with a run in flight.
FAST = {
    "KIOK_WORKER_HEARTBEAT_TIMEOUT_MS": "2000",
    "KIOK_WORKER_HEARTBEAT_INTERVAL_MS": "300",
}
WORKER_ENV = {**FAST, "KIOK_WORKER_SHUTDOWN_DRAIN_TIMEOUT_SECONDS": "10"}


def wait_until(predicate: Callable[[], T | None], timeout_s: float, what: str, poll_s: float = 0.05) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what} (last: {value!r})")
        time.sleep(poll_s)


class UnadmittedWorker(WorkerProcess):
    """A worker expected to be refused: ``start`` waits only for its status port (/health)."""

    ready_path = "/health"


class Cluster:
    """Starts masters and workers under one temporary directory and stops them all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[Standalone] = []

    def master(self, name: str = "master", env: dict[str, str] | None = None) -> Master:
        m = Master(self.root / name, {**FAST, **(env or {})})
        self.procs.append(m)
        m.start()
        return m

    def worker(
        self,
        master: Master,
        worker_id: str,
        *,
        token: str | None = None,
        labels: str | None = None,
        admitted: bool = True,
    ) -> WorkerProcess:
        env = dict(WORKER_ENV)
        if token is not None:
            env["KIOK_WORKER_JOIN_TOKEN"] = token
        if labels is not None:
            env["KIOK_WORKER_LABELS"] = labels
        cls = WorkerProcess if admitted else UnadmittedWorker
        w = cls(self.root / worker_id, master.internal_address, worker_id, env)
        self.procs.append(w)
        w.start()
        return w

    def stop_all(self) -> None:
        for p in reversed(self.procs):  # workers before their master
            # A refused worker holds no runs and may sit in a 15 s back-off: no long grace.
            shutdown(p, grace_s=1 if isinstance(p, UnadmittedWorker) else 12)


def shutdown(p: Standalone, grace_s: float) -> None:
    """SIGTERM, then SIGKILL after ``grace_s`` (a refused worker may sit in a long back-off)."""
    if p.proc is None or p.proc.poll() is not None:
        return
    p.signal(signal.SIGTERM)
    try:
        p.proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        p.kill9()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop_all()


def admitted_worker(
    cluster: Cluster, master: Master, worker_id: str, labels: str | None = None
) -> WorkerProcess:
    return cluster.worker(master, worker_id, token=master.join_token(), labels=labels)


def connection(w: WorkerProcess) -> str:
    return str(w.status()["masterConnection"])


def refused(w: WorkerProcess) -> str | None:
    """The worker's connection state once it says it was refused (None before)."""
    state = connection(w)
    return state if state.startswith("refused") else None


def said_revoked(w: WorkerProcess) -> str | None:
    """The worker's connection state once it says it was revoked (None before, and while it
    is "connecting" to try its join token after the revocation)."""
    state = connection(w)
    return state if "revoked" in state else None


def not_connected(w: WorkerProcess) -> str | None:
    """The worker's connection state once it is no longer ``connected`` (None before)."""
    state = connection(w)
    return state if state != "connected" else None


def cluster_worker(m: Master, worker_id: str) -> dict[str, Any] | None:
    r = m.api("GET", "/api/v1/cluster")
    assert r.status_code == 200, r.text
    return next((w for w in r.json()["workers"] if w["id"] == worker_id), None)


def sleeper_dag(m: Master, dag_id: str, seconds: float, labels: str = "") -> str:
    extra = f", labels: [{labels}]" if labels else ""
    return m.register(
        f"dag: {{id: {dag_id}{extra}}}\ntasks:\n  - {{id: t, script: 'sleep {seconds}; echo done'}}\n"
    )


def task_running(m: Master, run_id: str) -> dict[str, Any] | None:
    run = m.run(run_id)
    return run if run["state"] == "RUNNING" and run["tasks"]["t"]["state"] == "RUNNING" else None


# --- raw internal-protocol frames ------------------------------------------------------------


def frame(message: dict[str, Any]) -> bytes:
    body: bytes = msgpack.packb(message, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def hello(worker: str, version: int | str = 1, **auth: str) -> bytes:
    return frame(
        {"v": version, "t": "hello", "id": 0, "worker": worker, "labels": [], "slots": 1, "runs": [], **auth}
    )


def dial(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.settimeout(5)
    return s


def recv_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def read_reply(s: socket.socket) -> dict[str, Any]:
    (size,) = struct.unpack(">I", recv_exactly(s, 4))
    assert size < 64 * 1024, size
    reply: dict[str, Any] = msgpack.unpackb(recv_exactly(s, size), raw=False)
    return reply


def closed_by_peer(s: socket.socket, timeout_s: float) -> bool:
    """True once the master closes the connection (EOF or reset) within ``timeout_s``."""
    s.settimeout(timeout_s)
    try:
        while s.recv(4096):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def refusal(port: int, message: bytes) -> dict[str, Any]:
    """Send one HELLO; return the REFUSED frame after checking the master then hangs up."""
    with dial(port) as s:
        s.sendall(message)
        reply = read_reply(s)
        assert reply["t"] == "refused", reply
        assert closed_by_peer(s, 5), "the master kept a refused connection open"
        return reply


# --- 1. readiness gate -----------------------------------------------------------------------


def test_a_master_alone_is_healthy_but_closed_until_a_worker_joins(cluster: Cluster) -> None:
    m = cluster.master()
    assert httpx.get(m.url + "/healthz").status_code == 200
    r = httpx.get(m.url + "/readyz")
    assert r.status_code == 503 and "worker" in r.json()["reason"], r.text

    r = httpx.post(m.url + "/api/v1/auth/login", json={"user": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 200 and r.json()["accessToken"], r.text
    r = m.api("GET", "/api/v1/dags")
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "not_ready" and "worker" in error["message"], error

    before = datetime.now(UTC)
    r = m.api("POST", "/api/v1/admin/join-tokens", json={"role": "worker"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"token", "expiresAt"} and body["token"].startswith("kiok_join_v1."), body
    assert datetime.fromisoformat(body["expiresAt"]) > before + timedelta(minutes=59)

    cluster.worker(m, "w1", token=body["token"])
    m.wait_open(10)
    assert httpx.get(m.url + "/readyz").status_code == 200
    r = m.api("GET", "/api/v1/dags")
    assert r.status_code == 200, r.text


# --- 2. admission ----------------------------------------------------------------------------


def test_admission_credentials_refusals_and_revocation(cluster: Cluster, tmp_path: Path) -> None:
    m = cluster.master()
    token = m.join_token()
    w1 = cluster.worker(m, "w1", token=token)
    m.wait_open(10)

    cred_file = tmp_path / "w1" / "worker-credential"
    assert cred_file.stat().st_mode & 0o777 == 0o600
    credential = cred_file.read_text().strip()
    assert credential.startswith("kiok_cred_v1.") and token not in credential

    # The token is one-time: another worker presenting it is refused, and says so.
    w2 = cluster.worker(m, "w2", token=token, admitted=False)
    state = wait_until(lambda: refused(w2), 5, "w2 refused")
    assert "already used by another worker" in state, state
    assert httpx.get(w2.status_url + "/ready").status_code == 503
    wait_until(
        lambda: any(
            "refused" in line and "join token already used by another worker" in line
            for line in m.read_log().splitlines()
        ),
        5,
        "the master to log why w2 was refused",
    )

    # Restarted without the token, w1 comes back on its saved credential.
    shutdown(w1, grace_s=12)
    assert w1.proc is not None and w1.proc.returncode == 0
    del w1.extra_env["KIOK_WORKER_JOIN_TOKEN"]
    assert "KIOK_WORKER_JOIN_TOKEN" not in w1.env
    w1.start(timeout_s=15)
    assert connection(w1) == "connected"
    m.wait_open(10)
    assert cred_file.read_text().strip() == credential  # not re-issued

    rows = m.api("GET", "/api/v1/admin/workers").json()["workers"]
    assert [(r["id"], r["revoked"]) for r in rows] == [("w1", False)], rows

    # Secrets are stored hashed only: neither the token nor the credential is in the master's
    # data directory or its log.
    for f in (p for p in (tmp_path / "master").rglob("*") if p.is_file()):
        data = f.read_bytes()
        assert token.encode() not in data and credential.encode() not in data, f
    assert token not in m.read_log() and credential not in m.read_log()

    # A second admitted worker keeps the cluster (and the API) open once w1 is revoked.
    admitted_worker(cluster, m, "keeper")
    wait_until(lambda: (cluster_worker(m, "keeper") or {}).get("connected"), 5, "keeper connected")

    r = m.api("DELETE", "/api/v1/admin/workers/w1")
    assert r.status_code == 200 and r.json() == {"revoked": "w1"}, r.text
    revoked_at = time.monotonic()
    # Told it was revoked; it tries its (spent) join token at once, "connecting" meanwhile.
    state = wait_until(lambda: said_revoked(w1), 2, "w1 cut off, told it was revoked", 0.02)
    assert time.monotonic() - revoked_at < 2.2
    assert "revoked" in state, state
    assert httpx.get(w1.status_url + "/ready").status_code == 503
    row = cluster_worker(m, "w1")
    assert row is None or row["connected"] is False, row
    rows = {r["id"]: r for r in m.api("GET", "/api/v1/admin/workers").json()["workers"]}
    assert rows["w1"]["revoked"] is True and rows["w1"]["revokedAt"], rows

    # Its credential no longer admits it after a restart.
    shutdown(w1, grace_s=1)
    w1 = cluster.worker(m, "w1", admitted=False)
    state = wait_until(lambda: refused(w1), 5, "w1 refused")
    assert "revoked" in state, state

    # No token and no credential: refused with a reason that says what to set.
    w3 = cluster.worker(m, "w3", admitted=False)
    state = wait_until(lambda: refused(w3), 5, "w3 refused")
    assert "no credential and no join token" in state, state
    assert httpx.get(w3.status_url + "/ready").status_code == 503

    # Refusals touched neither the keeper nor the open API.
    assert (cluster_worker(m, "keeper") or {}).get("connected") is True


def test_repeated_failed_authentications_are_rate_limited(cluster: Cluster) -> None:
    m = cluster.master()
    for i in range(5):
        reply = refusal(m.internal_port, hello("intruder", credential=f"kiok_cred_v1.forged{i}"))
        assert reply["code"] == "unauthenticated" and "unknown worker" in reply["reason"], (i, reply)
    for i in range(2):  # the sixth attempt on, same address and worker id: turned away unexamined
        reply = refusal(m.internal_port, hello("intruder", joinToken="kiok_join_v1.forged"))
        assert reply["code"] == "rate_limited" and "too many" in reply["reason"], (i, reply)
    assert "too many failed authentications" in m.read_log()
    # The limit is per (address, claimed worker id): other ids from this address are examined
    # (tests/integration/test_worker_identity.py: garbage hellos keep no worker out).
    reply = refusal(m.internal_port, hello("intruder2", joinToken="kiok_join_v1.forged"))
    assert reply["code"] == "unauthenticated" and "unknown join token" in reply["reason"], reply
    assert httpx.get(m.url + "/healthz").status_code == 200


def test_a_revoked_worker_given_a_new_token_is_admitted_at_once_past_its_failures(cluster: Cluster) -> None:
    """Found by the day-one walk: a revoked worker left retrying had used up the failures its
    (address, id) may count; given a new token and restarted as docs/cluster.md says, its
    saved (revoked) credential was turned away unexamined and the token was not tried: it
    was admitted only once the limit's window had passed (and its log said "retry in 1s"
    before waiting 15 s)."""
    m = cluster.master()
    admitted_worker(cluster, m, "keeper")
    w1 = admitted_worker(cluster, m, "w1")
    wait_until(lambda: (cluster_worker(m, "w1") or {}).get("connected"), 10, "w1 connected")
    assert m.api("DELETE", "/api/v1/admin/workers/w1").status_code == 200
    shutdown(w1, grace_s=5)
    for i in range(5):  # the failures its retries counted, from this address for this id
        refusal(m.internal_port, hello("w1", credential=f"kiok_cred_v1.spent{i}"))
    assert refusal(m.internal_port, hello("w1", credential="kiok_cred_v1.more"))["code"] == "rate_limited"
    started = time.monotonic()
    w1 = cluster.worker(m, "w1", token=m.join_token())  # its saved credential is the revoked one
    wait_until(lambda: (cluster_worker(m, "w1") or {}).get("connected"), 10, "w1 admitted again")
    assert time.monotonic() - started < 10
    assert "trying the join token" in w1.read_log(), w1.read_log()


def test_a_refused_worker_exits_promptly_on_sigterm(cluster: Cluster) -> None:
    m = cluster.master()
    w = cluster.worker(m, "stray", admitted=False)
    wait_until(lambda: connection(w).startswith("refused"), 5, "stray refused")
    assert w.proc is not None
    w.signal(signal.SIGTERM)
    try:
        code: int | None = w.proc.wait(3)
    except subprocess.TimeoutExpired:
        code = None  # the fixture kills it
    assert code == 0, "a refused worker was still running 3 s after SIGTERM"


def test_a_hello_with_malformed_fields_is_refused_before_the_token_is_spent(cluster: Cluster) -> None:
    m = cluster.master()
    token = m.join_token()
    with dial(m.internal_port) as s:
        s.sendall(
            frame({"v": 1, "t": "hello", "id": 0, "worker": "odd", "slots": "many", "joinToken": token})
        )
        assert closed_by_peer(s, 5)
    wait_until(
        lambda: any(word in m.read_log() for word in ("internal connection", "Traceback")),
        5,
        "the master to log the connection",
    )
    log = m.read_log()
    admitted = [w["id"] for w in m.api("GET", "/api/v1/admin/workers").json()["workers"]]
    assert "Traceback" not in log and "Unhandled exception" not in log, log[-2000:]
    assert admitted == [], admitted


# --- 3. cluster and worker status views ------------------------------------------------------


def test_cluster_view_and_worker_status(cluster: Cluster) -> None:
    m = cluster.master()
    w = cluster.worker(m, "w1", token=m.join_token(), labels="Linux, ssd")
    m.wait_open(10)

    body = m.api("GET", "/api/v1/cluster").json()
    assert set(body) >= {"masters", "leader", "term", "workers"}, body
    [master] = body["masters"]
    assert master["role"] == "leader" and master["ready"] is True, master
    assert master["address"] == m.url and body["leader"] == master["id"], body
    assert isinstance(body["term"], int) and body["term"] >= 1
    [row] = body["workers"]
    assert row["id"] == "w1" and row["address"] == w.status_url, row  # where it is reached
    assert row["labels"] == ["linux", "ssd"] and row["slots"] == 8 and row["free"] == 8, row
    assert row["connected"] is True and row["draining"] is False, row
    heartbeat = datetime.fromisoformat(row["lastHeartbeat"])
    assert abs((datetime.now(UTC) - heartbeat).total_seconds()) < 5, row

    status = w.status()
    assert status["instanceId"] == "w1" and status["role"] == "worker", status
    assert status["masterConnection"] == "connected" and status["draining"] is False, status
    assert isinstance(status["uptimeSeconds"], int | float) and status["uptimeSeconds"] >= 0
    assert status["slots"] == {"total": 8, "busy": 0, "free": 8}, status
    assert status["labels"] == ["linux", "ssd"] and status["activeRuns"] == 0, status
    # Anyone on the host reaches this port: it gives counts, never runs or DAGs.
    assert "recentRuns" not in status, status

    dag = sleeper_dag(m, "nap", 1)
    run_id = m.trigger(dag)
    wait_until(lambda: task_running(m, run_id), 10, "the task to run")
    busy = wait_until(
        lambda: (s := w.status())["activeRuns"] == 1 and s["slots"]["busy"] == 1 and s, 5, "busy status"
    )
    assert busy["slots"]["free"] == 7, busy
    assert run_id not in str(busy) and dag not in str(busy), busy
    wait_until(lambda: (cluster_worker(m, "w1") or {}).get("free") == 7, 5, "free=7 in the cluster view")

    run = m.wait_run(run_id, 15)
    assert run["state"] == "SUCCESS" and run["worker"] == "w1", run
    status = wait_until(lambda: (s := w.status())["activeRuns"] == 0 and s, 5, "the run to leave the worker")
    assert status["slots"]["busy"] == 0 and "recentRuns" not in status, status
    assert run_id not in str(status) and dag not in str(status), status


# --- 4. label routing ------------------------------------------------------------------------


def test_runs_are_routed_by_labels(cluster: Cluster) -> None:
    m = cluster.master()
    admitted_worker(cluster, m, "wa", labels="gpu,linux")
    admitted_worker(cluster, m, "wb")
    m.wait_open(10)
    wait_until(lambda: len(m.api("GET", "/api/v1/cluster").json()["workers"]) == 2, 5, "both workers")

    for i, labels in enumerate(("gpu", "GPU", " Gpu , linux")):
        dag = m.register(
            f"dag: {{id: labelled{i}, labels: [{labels}]}}\n"
            "tasks:\n  - {id: a, script: 'echo a'}\n  - {id: b, requires: [a], script: 'echo b'}\n"
        )
        run = m.wait_run(m.trigger(dag), 15)
        assert run["state"] == "SUCCESS" and run["worker"] == "wa", (labels, run)
        assert {t["worker"] for t in run["tasks"].values()} == {"wa"}, (labels, run["tasks"])

    dag = sleeper_dag(m, "tpu", 0, labels="tpu")
    run_id = m.trigger(dag)
    run = wait_until(lambda: (r := m.run(run_id))["waiting"] and r, 5, "a waiting reason")
    assert run["state"] == "PENDING" and run["worker"] is None, run
    assert run["waiting"] == "no connected worker has labels ['tpu']", run
    deadline = time.monotonic() + 1  # and it stays so: no worker may take it
    while time.monotonic() < deadline:
        assert m.run(run_id)["state"] == "PENDING"
        time.sleep(0.1)


# --- 5. drain and SIGTERM --------------------------------------------------------------------


def test_drain_and_sigterm_let_running_runs_finish(cluster: Cluster) -> None:
    m = cluster.master()
    wa = admitted_worker(cluster, m, "wa")
    wb = admitted_worker(cluster, m, "wb")
    m.wait_open(10)

    r = httpx.post(wa.status_url + "/drain", headers=wa.status_auth)
    assert r.status_code == 200 and r.json()["draining"] is True, r.text
    assert wa.status()["draining"] is True
    assert httpx.get(wa.status_url + "/ready").status_code == 200  # still connected
    wait_until(lambda: (cluster_worker(m, "wa") or {}).get("draining") is True, 5, "wa draining")

    quick = m.register("dag: {id: quick}\ntasks:\n  - {id: t, script: 'echo hi'}\n")
    for run_id in [m.trigger(quick) for _ in range(3)]:
        run = m.wait_run(run_id, 15)
        assert run["state"] == "SUCCESS" and run["worker"] == "wb", run

    run_id = m.trigger(sleeper_dag(m, "slow", 2))
    run = wait_until(lambda: task_running(m, run_id), 10, "the slow task to start")
    assert run["worker"] == "wb", run
    proc = wb.proc
    assert proc is not None
    wb.signal(signal.SIGTERM)
    wait_until(lambda: proc.poll() is not None or wb.status()["draining"], 5, "wb to start draining")

    run = m.wait_run(run_id, 20)
    assert run["state"] == "SUCCESS" and run["worker"] == "wb", run
    assert run["tasks"]["t"]["worker"] == "wb" and run["tasks"]["t"]["attempt"] == 1, run["tasks"]
    assert m.log(run_id, "t") == "done\n"
    assert proc.wait(15) == 0
    assert "run finished SUCCESS" in m.log(run_id, "__run__")


# --- 6. the internal port defends itself -----------------------------------------------------


def test_the_internal_port_survives_hostile_connections_during_a_run(cluster: Cluster) -> None:
    # A short hello deadline so the silent connection is dropped within the test.
    m = cluster.master(env={"KIOK_INTERNAL_CONNECT_TIMEOUT_MS": "4000"})
    w = admitted_worker(cluster, m, "w1")
    m.wait_open(10)
    run_id = m.trigger(sleeper_dag(m, "steady", 3))
    wait_until(lambda: task_running(m, run_id), 10, "the task to start")
    port = m.internal_port

    half_open = dial(port)  # says nothing at all; left open through the run
    try:
        for junk in (b"\xde\xad\xbe\xef" * 64, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", frame({"t": 7})):
            with dial(port) as s:
                s.sendall(junk)
                assert closed_by_peer(s, 3), junk
        with dial(port) as s:  # an undecodable body of a plausible length
            s.sendall(struct.pack(">I", 8) + b"\xc1" * 8)
            assert closed_by_peer(s, 3)
        with dial(port) as s:  # 2 GiB announced: dropped at once, nothing allocated or awaited
            s.sendall(struct.pack(">I", 2**31))
            assert closed_by_peer(s, 2)
        with dial(port) as s:  # a frame cut short, then the connection closed
            s.sendall(hello("w1")[:10])
        with dial(port) as s:  # anything but a hello first
            s.sendall(frame({"v": 1, "t": "heartbeat", "id": 0, "free": 1}))
            assert closed_by_peer(s, 3)

        reply = refusal(port, hello("w1", version=99, credential="x"))
        assert reply["code"] == "unsupported_version", reply
        assert "unsupported protocol version" in reply["reason"] and "99" in reply["reason"], reply
        # A version of 64 KB is quoted short, in the reply and the master's log (it is anyone's).
        reply = refusal(port, hello("w1", version="V" * 60_000, credential="x"))
        assert reply["code"] == "unsupported_version" and len(reply["reason"]) < 200, len(reply["reason"])

        reply = refusal(port, hello("intruder"))
        assert reply["code"] == "unauthenticated" and "no credential" in reply["reason"], reply
        # Impersonating the connected worker with a wrong credential must not displace it.
        reply = refusal(port, hello("w1", credential="kiok_cred_v1.forged"))
        assert reply["code"] == "unauthenticated" and "wrong credential" in reply["reason"], reply

        run = m.wait_run(run_id, 20)
        assert run["state"] == "SUCCESS" and run["worker"] == "w1", run
        assert run["tasks"]["t"]["attempt"] == 1, run["tasks"]
        assert closed_by_peer(half_open, 6), "a silent connection outlived the hello deadline"
    finally:
        half_open.close()

    assert connection(w) == "connected"
    row = cluster_worker(m, "w1")
    assert row is not None and row["connected"] is True, row
    assert httpx.get(m.url + "/healthz").status_code == 200
    assert httpx.get(m.url + "/readyz").status_code == 200
    log = m.read_log()
    assert "worker w1 disconnected" not in log and "Traceback" not in log, log[-3000:]
    assert "unsupported protocol version 99" in log and "V" * 100 not in log
    assert m.wait_run(m.trigger(sleeper_dag(m, "after", 0)), 15)["state"] == "SUCCESS"
