"""Optional TLS (``kiok.tls.cert/key/ca``) on real processes: the admin API and health probes
over https, the CLI verifying the master against a CA, a worker on a mutually
authenticated internal protocol, and refusals: a plain client, a worker without a client
certificate, a half-configured or unreadable setting at start."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from kiok.testing.process import ADMIN_PASSWORD, Master, Standalone, WorkerProcess, kiok_executable
from kiok.testing.tls import TestCA

pytestmark = pytest.mark.slow

DAG = """
dag: {id: tls_dag}
tasks:
  - id: hello
    type: shell
    script: echo over-tls
"""


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


def test_standalone_serves_https_and_the_cli_verifies_it(tmp_path: Path, ca: TestCA) -> None:
    node = Standalone(tmp_path / "data", ca.env(ca.issue("standalone")))
    node.start()
    try:
        assert node.url.startswith("https://")
        assert node.http("GET", node.url + "/healthz").status_code == 200
        run = node.trigger(node.register(DAG))
        assert node.wait_run(run)["state"] == "SUCCESS"
        assert "over-tls" in node.log(run, "hello")
        # Plain HTTP to the TLS port gets no answer; an unknown CA is not trusted.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{node.admin_port}/healthz", timeout=3)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(node.url + "/healthz", timeout=3)
        # The worker status port is https too.
        assert node.http("GET", node.status_url + "/health").status_code == 200

        env = {k: v for k, v in os.environ.items() if not k.startswith("KIOK_")}
        env |= {"KIOK_MASTER": node.url, "KIOK_TLS_CA": ca.env(None)["KIOK_TLS_CA"]}
        env["XDG_CONFIG_HOME"] = str(tmp_path / "cli-config")
        login = subprocess.run(
            [kiok_executable(), "login", "--user", "admin", "--password", ADMIN_PASSWORD],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert login.returncode == 0, login.stderr
        listed = subprocess.run(
            [kiok_executable(), "dags", "list"], env=env, capture_output=True, text=True, timeout=60
        )
        assert listed.returncode == 0, listed.stderr
        assert "tls_dag" in listed.stdout
        # The login's context keeps the CA; a CLI without either does not trust the master.
        without_ca = {k: v for k, v in env.items() if k != "KIOK_TLS_CA"}
        remembered = subprocess.run(
            [kiok_executable(), "dags", "list"], env=without_ca, capture_output=True, text=True, timeout=60
        )
        assert remembered.returncode == 0 and "tls_dag" in remembered.stdout, remembered.stderr
        untrusted = subprocess.run(
            [kiok_executable(), "--token", node.token, "dags", "list"],
            env={**without_ca, "XDG_CONFIG_HOME": str(tmp_path / "other-config")},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert untrusted.returncode != 0
        assert "certificate" in untrusted.stderr.lower()
    finally:
        node.stop()


def test_worker_runs_over_mutual_tls_and_unauthenticated_peers_are_turned_away(
    tmp_path: Path, ca: TestCA
) -> None:
    master = Master(tmp_path / "master", ca.env(ca.issue("master")))
    master.start()
    procs: list[Standalone] = [master]
    try:
        # A worker that trusts the CA but presents no client certificate never gets in.
        anonymous = WorkerProcess(
            tmp_path / "anonymous",
            master.internal_address,
            "anonymous",
            {"KIOK_WORKER_JOIN_TOKEN": master.join_token(), **ca.env(None)},
        )
        anonymous.ready_path = "/health"
        procs.append(anonymous)
        anonymous.start()
        master.wait_for(
            lambda: "connection to master" in anonymous.read_log(), 20, "the anonymous worker's failure"
        )
        assert master.http("GET", master.url + "/readyz").status_code == 503

        # A plain TCP peer sending bytes does not harm the server.
        host, port = master.internal_address.split(":")
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(b"\x00\x00\x00\x05hello")
            raw.settimeout(5)
            raw.recv(100)  # a TLS alert or the close
        assert master.http("GET", master.url + "/healthz").status_code == 200

        worker = WorkerProcess(
            tmp_path / "worker",
            master.internal_address,
            "w1",
            {"KIOK_WORKER_JOIN_TOKEN": master.join_token(), **ca.env(ca.issue("w1"))},
        )
        procs.append(worker)
        worker.start()
        master.wait_open()
        run = master.trigger(master.register(DAG))
        assert master.wait_run(run)["state"] == "SUCCESS"
        assert "over-tls" in master.log(run, "hello")
        assert worker.http("GET", worker.status_url + "/status").json()["masterConnection"] == "connected"
    finally:
        for p in reversed(procs):
            p.stop()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"KIOK_TLS_CERT": "CERT"}, "kiok.tls.cert and kiok.tls.key go together"),
        ({"KIOK_TLS_CERT": "CERT", "KIOK_TLS_KEY": "/nonexistent/key.pem"}, "kiok.tls.key: no such file"),
        ({"KIOK_TLS_CERT": "CERT", "KIOK_TLS_KEY": "OTHER_KEY"}, "cannot be loaded"),
    ],
)
def test_a_wrong_tls_setting_stops_the_start_with_its_name(
    tmp_path: Path, ca: TestCA, setting: dict[str, str], message: str
) -> None:
    leaf, other = ca.issue("one"), ca.issue("two")
    values = {"CERT": str(leaf.cert), "OTHER_KEY": str(other.key)}
    node = Standalone(tmp_path / "data", {k: values.get(v, v) for k, v in setting.items()})
    with pytest.raises(RuntimeError, match="exited") as failed:
        node.start(timeout_s=20)
    assert message in str(failed.value)
    assert not (tmp_path / "data" / "state").exists()
