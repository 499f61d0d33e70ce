"""``kiok.roots.startup.claim``: a start refused for a port taken has made no data directory
and written no file in one (README: a process that cannot start exits before it opens
anything); a directory another process holds is still the refusal said first."""

from __future__ import annotations

import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiok.errors import Conflict
from kiok.roots.startup import LOCK_FILE, claim, lock_data_dir


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port another socket listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_port_taken_leaves_no_data_directory_behind(tmp_path: Path, taken: int) -> None:
    data = tmp_path / "new" / "data"
    with pytest.raises(Conflict, match=rf"127\.0\.0\.1:{taken} \(kiok\.worker\.status\.port\) is in use"):
        claim(
            data,
            [
                ("127.0.0.1", _free_port(), "kiok.master.admin.port"),
                ("127.0.0.1", taken, "kiok.worker.status.port"),
            ],
        )
    assert not (tmp_path / "new").exists()


def test_a_port_taken_writes_nothing_into_an_empty_data_directory(tmp_path: Path, taken: int) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(Conflict, match="is in use by another process"):
        claim(data, [("127.0.0.1", taken, "kiok.master.admin.port")])
    assert list(data.iterdir()) == []


def test_a_data_directory_in_use_is_said_before_a_port_taken(tmp_path: Path, taken: int) -> None:
    data = tmp_path / "data"
    data.mkdir()
    held = lock_data_dir(data)  # another start of the same kiok: its ports are taken too
    try:
        with pytest.raises(
            Conflict, match=r"data directory .* is in use by another kiok process \(pid \d+\)"
        ):
            claim(data, [("127.0.0.1", taken, "kiok.master.admin.port")])
    finally:
        held.release()


def test_a_claim_makes_and_locks_the_directory_and_binds_the_ports(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = _free_port()
    lock, listeners = claim(data, [("127.0.0.1", port, "kiok.master.admin.port")])
    try:
        assert stat.S_IMODE(data.stat().st_mode) == 0o700 and (data / LOCK_FILE).exists()
        assert [s.getsockname()[1] for s in listeners] == [port]
        with pytest.raises(Conflict, match="in use by another kiok process"):
            lock_data_dir(data)
    finally:
        lock.release()
        for s in listeners:
            s.close()
