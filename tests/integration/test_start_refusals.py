"""A real ``kiok standalone`` refusing to start on a damaged data directory: one line naming
the file or store and the problem, exit status non-zero, no traceback, nothing announced or
bootstrapped before it (audit items 1b-1d, 7, 9, 10)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import msgpack
import pytest

from kiok.store import keys
from kiok.store.keyring import new_keyring
from kiok.store.kv import RocksKV
from kiok.testing.process import Standalone, free_port, kiok_executable

pytestmark = pytest.mark.slow

EXIT_TIMEOUT_S = 60


def refusal(data: Path, **env: str) -> str:
    """Run ``kiok standalone`` on ``data`` until it exits by itself; its one line (it must
    have failed, in one line, without a traceback)."""
    data.mkdir(parents=True, exist_ok=True)
    full = {k: v for k, v in os.environ.items() if not k.startswith("KIOK_")}
    full.update(
        KIOK_BASE_DATA_DIR=str(data),
        KIOK_MASTER_ADMIN_PORT=str(free_port()),
        KIOK_MASTER_INTERNAL_PORT=str(free_port()),
        KIOK_WORKER_STATUS_PORT=str(free_port()),
        KIOK_WORKER_TASK_ISOLATION="none",
        KIOK_KMS_PBKDF2_ITERATIONS="1000",
        **env,
    )
    proc = subprocess.run(
        [kiok_executable(), "standalone"], env=full, capture_output=True, text=True, timeout=EXIT_TIMEOUT_S
    )
    out = proc.stdout + proc.stderr
    lines = [line for line in out.splitlines() if line.strip() and "WARNING" not in line]
    assert proc.returncode != 0, out
    assert "Traceback" not in out, out
    assert len(lines) == 1, out
    return lines[0]


def test_a_master_key_file_that_is_not_text_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "master.key").write_bytes(b"\xff\xfe\x00key")
    line = refusal(data)
    assert str(data / "master.key") in line and "not text" in line, line


def test_an_empty_generated_master_key_file_is_named_not_the_variable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "master.key").write_text("\n")
    line = refusal(data)
    assert str(data / "master.key") in line and "empty" in line and "KIOK_MASTER_KEY" not in line, line


def test_a_wrong_passphrase_in_the_key_file_names_the_key_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # A store whose keyring another key wraps: what a restart with the wrong key file meets.
    _ring, salt, wrapped, _root = new_keyring("b" * 40, 1000)
    kv = RocksKV(data / "state", keys.SPACES)
    kv.write(
        [
            (keys.KMS, keys.KEYRING.encode(), msgpack.packb(wrapped)),
            (keys.KMS, keys.KEYRING_SALT.encode(), msgpack.packb(salt)),
        ],
        sync=True,
    )
    kv.close()
    key_file = tmp_path / "key"
    key_file.write_text("c" * 40 + "\n")
    key_file.chmod(0o600)
    line = refusal(data, KIOK_KMS_MASTER_KEY_FILE=str(key_file))
    assert str(key_file) in line and "does not match" in line and "KIOK_MASTER_KEY" not in line, line


@pytest.mark.parametrize("damage", ["current-deleted", "manifest-damaged"])
def test_a_damaged_store_is_one_line_naming_it_and_the_way_back(tmp_path: Path, damage: str) -> None:
    data = tmp_path / "data"
    kv = RocksKV(data / "state", keys.SPACES)
    kv.write([(keys.KMS, b"x", b"y")], sync=True)
    kv.close()
    (data / "master.key").write_text("k" * 40 + "\n")
    if damage == "current-deleted":
        (data / "state" / "CURRENT").unlink()
    else:
        for manifest in (data / "state").glob("MANIFEST-*"):
            manifest.write_bytes(b"\x00garbage" * 8)
    before = sorted(p.name for p in (data / "state").iterdir())
    line = refusal(data)
    assert str(data / "state") in line and "Corruption" in line, line
    assert "restore" in line, line
    if damage == "current-deleted":
        # Opened without its CURRENT, RocksDB wrote a new empty store over the files (and a
        # second start, with a restart policy, then deleted their tables): refused untouched.
        assert "restore" in refusal(data)
        assert sorted(p.name for p in (data / "state").iterdir()) == before


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param(b"\xff\xfe\x00", "not text", id="not-utf8"),
        pytest.param(b"\n", "not an id", id="empty"),
        pytest.param(b"../x\n", "not an id", id="path"),
    ],
)
def test_a_bad_worker_id_file_is_one_line(tmp_path: Path, content: bytes, problem: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "worker-id").write_bytes(content)
    line = refusal(data)
    assert str(data / "worker-id") in line and problem in line, line


def test_a_worker_id_directory_is_refused_before_the_bootstrap(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "worker-id").mkdir(parents=True)
    line = refusal(data)  # one line: no "first bootstrap" before it
    assert str(data / "worker-id") in line and "Is a directory" in line, line
    assert not (data / "state").exists()


def test_a_master_whose_raft_port_its_peers_could_not_reach_is_one_line(tmp_path: Path) -> None:
    """The Raft port binds ``kiok.master.host``: left at 127.0.0.1 while the peers are other
    hosts, the masters could never meet; said at start, not found by a cluster with no leader."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("KIOK_")}
    full.update(
        KIOK_BASE_DATA_DIR=str(tmp_path / "m1"),
        KIOK_MASTER_ADMIN_PORT=str(free_port()),
        KIOK_MASTER_INTERNAL_PORT=str(free_port()),
        KIOK_MASTER_ID="m1",
        KIOK_MASTER_PEERS=f"m1=127.0.0.1:{free_port()},m2=host2.example:7001,m3=10.0.0.3:7001",
        KIOK_MASTER_KEY="a-master-key-for-this-test-0123456789",
        KIOK_KMS_PBKDF2_ITERATIONS="1000",
    )
    proc = subprocess.run([kiok_executable(), "master"], env=full, capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    lines = [line for line in out.splitlines() if line.strip() and "WARNING" not in line]
    assert proc.returncode == 1 and "Traceback" not in out and len(lines) == 1, out
    assert "kiok.master.host is 127.0.0.1" in lines[0] and "m2=host2.example:7001" in lines[0], lines[0]
    assert "m3=10.0.0.3:7001" in lines[0] and "0.0.0.0" in lines[0], lines[0]


class _OnIpv6Loopback(Standalone):
    @property
    def url(self) -> str:
        return f"http://[::1]:{self.admin_port}"

    @property
    def status_url(self) -> str:
        return f"http://[::1]:{self.status_port}"


def test_a_standalone_on_an_ipv6_address_advertises_addresses_clients_can_parse(tmp_path: Path) -> None:
    """The day-one re-probe (session 27): on ``::1`` the master advertised ``http://::1:<port>``
    (in ``GET /api/v1/cluster``, for forwarded writes and notification links), which no client
    parses; the worker's own address was right."""
    node = _OnIpv6Loopback(tmp_path / "kiok", {"KIOK_MASTER_HOST": "::1", "KIOK_WORKER_HOST": "::1"})
    try:
        node.start()
        cluster = node.api("GET", "/api/v1/cluster").json()
        (master,) = cluster["masters"]
        assert master["address"] == f"http://[::1]:{node.admin_port}", cluster
        assert httpx.URL(master["address"]).port == node.admin_port
    finally:
        node.stop()
