"""Starting real kiok processes for tests and benchmarks: free loopback ports, a temporary
data directory, readiness polled with a deadline, kill -9 and restart on the same data."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import httpx

from kiok.security.tls import client_verify
from kiok.worker.status_token import read_status_token, status_token_path

ADMIN_PASSWORD = "Test-Admin-Pw-0123456789"
TERMINAL = ("SUCCESS", "FAILED", "CANCELLED")


#: Its own source (the global one may be seeded by a test, the same in every process).
_PORTS = random.SystemRandom()
#: The ports this process handed out: never twice (a group's ports are all picked before any
#: of its processes binds one).
_HANDED: set[int] = set()


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range: a port the kernel handed out as
    free (``bind(0)``) is one it may hand to an outgoing connection's socket (a client of
    another test) before the process that was to listen on it binds it."""
    low = _ephemeral_low()
    for _ in range(200):
        port = _PORTS.randrange(10000, low)
        if port in _HANDED:  # given to a process that may not have bound it yet
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED.add(port)
            return port
    with socket.socket() as s:  # every try taken: any port the kernel says is free
        s.bind(("127.0.0.1", 0))
        found: int = s.getsockname()[1]
        return found


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux's default 32768 elsewhere)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768
    return low if low > 11000 else 32768


def kiok_executable() -> str:
    found = shutil.which("kiok", path=str(Path(sys.executable).parent))
    return found or "kiok"


class Standalone:
    """One ``kiok standalone`` process (subclasses: other process kinds)."""

    command = "standalone"
    #: Polled until it answers 200: the process is up and (for standalone) ready.
    ready_path = "/readyz"
    #: The ``kiok`` program to start; None: the one next to this Python (another venv's, to
    #: test an installed wheel).
    executable: str | None = None

    def __init__(self, data_dir: Path, extra_env: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.admin_port = free_port()
        self.internal_port = free_port()
        self.status_port = free_port()
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self._token: str | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KIOK_")}
        env.update(
            KIOK_BASE_DATA_DIR=str(self.data_dir),
            KIOK_MASTER_ADMIN_PORT=str(self.admin_port),
            KIOK_MASTER_INTERNAL_PORT=str(self.internal_port),
            KIOK_WORKER_STATUS_PORT=str(self.status_port),
            KIOK_IAM_ADMIN_PASSWORD=ADMIN_PASSWORD,
        )
        env.update(self.extra_env)
        return env

    @property
    def internal_address(self) -> str:
        return f"127.0.0.1:{self.internal_port}"

    def join_token(self) -> str:
        r = self.api("POST", "/api/v1/admin/join-tokens", json={"role": "worker"})
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    @property
    def scheme(self) -> str:
        return "https" if self.env.get("KIOK_TLS_CERT") else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.admin_port}"

    def http(self, method: str, url: str, **kw: Any) -> httpx.Response:
        """One HTTP request, verifying an https server against ``KIOK_TLS_CA`` of this process."""
        kw.setdefault("verify", client_verify(url, self.env.get("KIOK_TLS_CA")))
        return httpx.request(method, url, **kw)

    @property
    def probe_base(self) -> str:
        return self.url

    @property
    def status_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.status_port}"

    @property
    def status_token_file(self) -> Path:
        """Where the worker (of a standalone or worker process) keeps its status token."""
        return status_token_path(self.data_dir)

    @property
    def status_auth(self) -> dict[str, str]:
        """The header drain and undrain on the status port take, read as an operator does:
        from the worker's data directory (a new token at each start)."""
        return {"Authorization": f"Bearer {read_status_token(self.status_token_file)}"}

    def start(self, timeout_s: float = 30) -> Self:
        self.spawn()
        self.wait_ready(timeout_s)
        return self

    def spawn(self) -> None:
        """Start the process without waiting for it (``wait_ready`` waits)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [self.executable or kiok_executable(), self.command],
            env=self.env,
            cwd=self.data_dir.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._token = None

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"kiok exited with {self.proc.returncode}:\n{self.read_log()[-3000:]}")
            try:
                if self.http("GET", self.probe_base + self.ready_path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"kiok not ready after {timeout_s}s:\n{self.read_log()[-3000:]}")

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def signal(self, sig: int) -> None:
        """Send ``sig`` (e.g. SIGSTOP, SIGCONT) to the whole process group."""
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    # --- HTTP helpers ----------------------------------------------------------------------

    @property
    def token(self) -> str:
        if self._token is None:
            # A 503 with Retry-After is transient (e.g. a follower forwarding the login while
            # the leader settles in): retried, as a client should, for up to 30 s.
            deadline = time.monotonic() + 30
            credentials = {"user": "admin", "password": ADMIN_PASSWORD}
            while True:
                r = self.http("POST", self.url + "/api/v1/auth/login", json=credentials)
                if r.status_code != 503 or "retry-after" not in r.headers or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            r.raise_for_status()
            self._token = r.json()["accessToken"]
        return self._token

    def api(self, method: str, path: str, *, auth: bool = True, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if auth:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        return self.http(method, self.url + path, headers=headers, timeout=kw.pop("timeout", 30), **kw)

    def register(self, yaml_text: str) -> str:
        r = self.api("POST", "/api/v1/dags", content=yaml_text, headers={"Content-Type": "application/yaml"})
        assert r.status_code == 201, r.text
        return str(r.json()["registered"])

    def trigger(self, dag_id: str, args: Mapping[str, Any] | None = None) -> str:
        r = self.api("POST", f"/api/v1/dags/{dag_id}/runs", json={"args": dict(args or {})})
        assert r.status_code == 201, r.text
        return str(r.json()["runId"])

    def run(self, run_id: str) -> dict[str, Any]:
        r = self.api("GET", f"/api/v1/runs/{run_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def wait_run(
        self, run_id: str, timeout_s: float = 30, states: tuple[str, ...] = TERMINAL, poll_s: float = 0.05
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            run = self.run(run_id)
            return run if run["state"] in states else None

        result: dict[str, Any] = self.wait_for(reached, timeout_s, f"run {run_id} {states}", poll_s)
        return result

    def wait_for(self, predicate: Any, timeout_s: float, what: str, poll_s: float = 0.05) -> Any:
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(poll_s)
        raise TimeoutError(f"timed out waiting for {what}")

    def log(self, run_id: str, task_id: str) -> str:
        out, offset = [], 0
        while True:
            r = self.api("GET", f"/api/v1/runs/{run_id}/tasks/{task_id}/log", params={"offset": offset})
            assert r.status_code == 200, r.text
            body = r.json()
            out.append(body["data"])
            if body["nextOffset"] == offset:
                return "".join(out)
            offset = body["nextOffset"]


class Master(Standalone):
    """One ``kiok master``: up once /healthz answers (the API opens with the first worker)."""

    command = "master"
    ready_path = "/healthz"

    def wait_open(self, timeout_s: float = 30) -> None:
        self.wait_for(
            lambda: self.http("GET", self.url + "/readyz").status_code == 200,
            timeout_s,
            "the cluster to open",
        )


class WorkerProcess(Standalone):
    """One ``kiok worker`` connected to ``masters``; up once its /ready answers 200."""

    command = "worker"
    ready_path = "/ready"

    def __init__(
        self, data_dir: Path, masters: str, worker_id: str, extra_env: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(
            data_dir, {"KIOK_WORKER_MASTERS": masters, "KIOK_WORKER_ID": worker_id, **(extra_env or {})}
        )
        self.worker_id = worker_id

    @property
    def probe_base(self) -> str:
        return self.status_url

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = self.http("GET", self.status_url + "/status", timeout=5).json()
        return body


class MasterGroup:
    """Three (or five) ``kiok master`` processes replicating one state with Raft."""

    MASTER_KEY = "kiok-test-master-key-0123456789abcdef"

    def __init__(self, root: Path, size: int = 3, extra_env: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.extra_env = dict(extra_env or {})
        self.workers: list[WorkerProcess] = []
        raft_ports = {f"m{i}": free_port() for i in range(1, size + 1)}
        peers = ",".join(f"{mid}=127.0.0.1:{port}" for mid, port in raft_ports.items())
        self.masters = {
            mid: Master(
                root / mid,
                {
                    "KIOK_MASTER_ID": mid,
                    "KIOK_MASTER_PEERS": peers,
                    "KIOK_MASTER_KEY": self.MASTER_KEY,
                    **(extra_env or {}),
                },
            )
            for mid in raft_ports
        }

    def add_worker(self, via: Master, worker_id: str) -> WorkerProcess:
        """A started ``kiok worker`` joined with a token from ``via``, with the group's
        settings (heartbeats) and a short drain, its data in ``root/<worker_id>``."""
        env = {
            **self.extra_env,
            "KIOK_WORKER_JOIN_TOKEN": via.join_token(),
            "KIOK_WORKER_SHUTDOWN_DRAIN_TIMEOUT_SECONDS": "5",
        }
        worker = WorkerProcess(self.root / worker_id, self.workers_address, worker_id, env)
        self.workers.append(worker)
        worker.start()
        return worker

    def start(self) -> MasterGroup:
        """Start every master at once (as a whole-cluster restart would) and wait for all."""
        for m in self.masters.values():
            m.spawn()
        for m in self.masters.values():
            m.wait_ready(30)
        return self

    def stop(self) -> None:
        """Stop the workers ``add_worker`` started (even when a test failed before it did),
        then the masters: each of them, whatever stopping another raised."""
        for process in [*self.workers, *self.masters.values()]:
            with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                process.stop()

    @property
    def workers_address(self) -> str:
        return ",".join(m.internal_address for m in self.masters.values())

    def health(self, mid: str) -> dict[str, Any] | None:
        m = self.masters[mid]
        if m.proc is None or m.proc.poll() is not None:
            return None
        try:
            body: dict[str, Any] = m.http("GET", m.url + "/cluster/health", timeout=2).json()
            return body
        except httpx.HTTPError:
            return None

    def leader(self, timeout_s: float = 30, exclude: str | None = None) -> Master:
        """The master every live master names as leader (waits until they agree)."""

        def agreed() -> str | None:
            views = [self.health(mid) for mid in self.masters if mid != exclude]
            named = {v.get("leader") for v in views if v is not None}
            if len(named) != 1 or None in named or exclude in named:
                return None
            mid = named.pop()
            own = self.health(str(mid))  # the leader has taken over: it coordinates and answers
            return mid if own is not None and own.get("role") == "leader" else None

        try:
            mid = next(iter(self.masters.values())).wait_for(
                agreed, timeout_s, "the masters to agree on a leader"
            )
        except TimeoutError:  # say what each master saw: a failure in CI is read from this alone
            views = {m: self.health(m) for m in self.masters if m != exclude}
            raise TimeoutError(f"timed out waiting for the masters to agree on a leader: {views}") from None
        return self.masters[str(mid)]

    def settle(self, timeout_s: float = 30) -> None:
        """Wait until every running master has applied the same Raft index."""

        def same() -> bool:
            views = [self.health(mid) for mid, m in self.masters.items() if m.proc and m.proc.poll() is None]
            applied = {v.get("appliedIndex") if v else None for v in views}
            return len(applied) == 1 and None not in applied

        next(iter(self.masters.values())).wait_for(same, timeout_s, "the masters to apply the same index")

    def stop_quietly(self) -> None:
        """Stop followers first, then the leader: no election, no write on the way down."""
        leader = self.leader()
        for m in [*self.followers(leader), leader]:
            m.stop()

    def followers(self, leader: Master) -> list[Master]:
        return [m for m in self.masters.values() if m is not leader]


def store_digest(data_dir: Path, master_key: str) -> str:
    """SHA-256 over every (keyspace, key, decrypted value) of a stopped master's state and
    job-log stores. Ciphertexts differ between masters (random nonces); the plaintext must
    not. How far each store applied the Raft journal is this master's bookkeeping: left out."""
    import hashlib

    from kiok.store import joblog, keys
    from kiok.store.encrypted import EncryptedKV
    from kiok.store.keyring import existing_keyring
    from kiok.store.kv import RocksKV

    found = existing_keyring(data_dir / "state", master_key, 200_000)
    assert found is not None, f"{data_dir} has no keyring"
    stores = [
        (EncryptedKV(RocksKV(data_dir / "state", keys.SPACES), keys.ENCRYPTION_KEYS), keys.SPACES),
        (
            EncryptedKV(RocksKV(data_dir / "joblog", joblog.SPACES), joblog.ENCRYPTION_KEYS),
            (joblog.LOGS,),
        ),
    ]
    digest = hashlib.sha256()
    try:
        for kv, spaces in stores:
            kv.set_keyring(found[0])
            for space in spaces:
                for key, value in kv.scan(space, b""):
                    if space == keys.KMS and key == keys.RAFT_APPLIED.encode():
                        continue
                    digest.update(b"%s\0%s\0%s\0" % (space.encode(), key, value))
    finally:
        for kv, _ in stores:
            kv.close()
    return digest.hexdigest()
