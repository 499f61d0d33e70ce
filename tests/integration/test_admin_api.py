"""``/api/v1/admin`` and ``kiok admin`` against a real ``kiok standalone``: join tokens (201
shape, validation, authentication), the worker list, revoking an unknown worker, and the CLI
printing the token alone on stdout. One test admits a real ``kiok worker`` to a ``kiok master``
end to end; the finer redeem rules are covered in ``tests/unit/test_admission.py``."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from kiok.testing.process import Master, Standalone, WorkerProcess, kiok_executable


def kiok_cli(node: Standalone, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOK_")}
    env.update(KIOK_MASTER=f"127.0.0.1:{node.admin_port}", KIOK_USER_TOKEN=node.token)
    return subprocess.run(
        [kiok_executable(), *args], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_join_token_is_created_with_201_and_an_expiry(shared_kiok: Standalone) -> None:
    before = datetime.now(UTC)
    r = shared_kiok.api("POST", "/api/v1/admin/join-tokens", json={"role": "worker", "ttlSeconds": 600})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"token", "expiresAt"} and body["token"].startswith("kiok_join_v1.")
    expires = datetime.fromisoformat(body["expiresAt"])
    assert before + timedelta(seconds=599) <= expires <= datetime.now(UTC) + timedelta(seconds=601)
    again = shared_kiok.api("POST", "/api/v1/admin/join-tokens", json={"role": "worker"}).json()
    assert again["token"] != body["token"]


def test_join_token_requests_are_validated_and_authenticated(shared_kiok: Standalone) -> None:
    path = "/api/v1/admin/join-tokens"
    for bad in ({"role": "master"}, {"ttlSeconds": 1}, {"ttlSeconds": 10**9}):
        r = shared_kiok.api("POST", path, json=bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input", (bad, r.text)
    r = shared_kiok.api("POST", path, json={"role": "worker"}, auth=False)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"


def test_workers_are_listed_and_an_unknown_one_cannot_be_revoked(shared_kiok: Standalone) -> None:
    r = shared_kiok.api("GET", "/api/v1/admin/workers")
    assert r.status_code == 200 and isinstance(r.json()["workers"], list), r.text
    r = shared_kiok.api("DELETE", "/api/v1/admin/workers/no-such-worker")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    assert shared_kiok.api("GET", "/api/v1/admin/workers", auth=False).status_code == 401


def test_cli_join_token_prints_only_the_token(shared_kiok: Standalone) -> None:
    done = kiok_cli(shared_kiok, "admin", "join-token", "--ttl", "120")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert done.stdout == token + "\n" and token.startswith("kiok_join_v1.")
    assert "expires at" in done.stderr and token not in done.stderr

    listed = kiok_cli(shared_kiok, "admin", "workers", "--json")
    assert listed.returncode == 0 and isinstance(json.loads(listed.stdout)["workers"], list), listed.stderr
    gone = kiok_cli(shared_kiok, "admin", "revoke", "no-such-worker")
    assert gone.returncode == 1 and gone.stderr.startswith("error: ") and "no-such-worker" in gone.stderr


def test_a_worker_is_admitted_once_reconnects_with_its_credential_and_is_cut_off_when_revoked(
    tmp_path: Path, processes: list[Standalone]
) -> None:
    master = Master(tmp_path / "master")
    processes.append(master.start())
    token = master.join_token()
    w1 = WorkerProcess(tmp_path / "w1", master.internal_address, "w1", {"KIOK_WORKER_JOIN_TOKEN": token})
    processes.append(w1.start())
    master.wait_open()
    credential = tmp_path / "w1" / "worker-credential"
    assert credential.stat().st_mode & 0o777 == 0o600 and token not in credential.read_text()
    [row] = master.api("GET", "/api/v1/admin/workers").json()["workers"]
    assert row["id"] == "w1" and row["revoked"] is False

    w1.stop()  # a restart without the token: the saved credential admits it
    del w1.extra_env["KIOK_WORKER_JOIN_TOKEN"]
    w1.start()
    master.wait_open()

    w2 = WorkerProcess(tmp_path / "w2", master.internal_address, "w2", {"KIOK_WORKER_JOIN_TOKEN": token})
    processes.append(w2)
    with pytest.raises((TimeoutError, RuntimeError)):
        w2.start(timeout_s=1)
    master.wait_for(lambda: "already used by another worker" in w2.read_log(), 5, "w2 to be refused")
    w2.stop()

    r = master.api("DELETE", "/api/v1/admin/workers/w1")
    assert r.status_code == 200 and r.json() == {"revoked": "w1"}
    master.wait_for(
        lambda: httpx.get(w1.status_url + "/ready").status_code == 503, 2, "w1 to lose its master", 0.02
    )
    # Its only worker gone, the (opened) cluster is degraded, still answering.
    health = httpx.get(master.url + "/readyz")
    assert health.status_code == 200 and health.json()["status"] == "degraded", health.text
