"""Snapshots written off the Raft thread (``kiok.store.snapshot_writer``): the file holds the
stores as pinned, not what was written to them meanwhile; it reaches PySyncObj's path only
once whole; a failed or abandoned write leaves the previous snapshot in place; a stop while
a write is under way waits for it to end and starts no other."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kiok.store import keys as k
from kiok.store import snapshot
from kiok.store.kv import RocksKV
from kiok.store.snapshot_writer import FAILED, IDLE, SUCCESS, WRITING, SnapshotWriter

APPLIED = (k.KMS, k.RAFT_APPLIED.encode())
RAFT = ((b"", 40, 1), (b"", 39, 1), [SimpleNamespace(id="127.0.0.1:7001")])


class Harness:
    """A writer over one real store, whose file writes wait for ``go`` (or a cancel)."""

    def __init__(self, root: Path, fail: bool = False) -> None:
        self.state = RocksKV(root / "state", k.SPACES)
        self.parts = [snapshot.Part("state", self.state, k.SPACES, APPLIED)]
        self.state.write([(k.META, b"dag/a", b"1"), (*APPLIED, b"40")], sync=False)
        self.path = root / "snapshot"
        self.path.write_bytes(b"the previous snapshot")
        self.scratch = root / "snapshot.writing"
        self.go = threading.Event()
        self.fail = fail
        self.writer = SnapshotWriter(self.path, lambda: snapshot.pin(self.parts), self._write)

    def _write(
        self, pinned: snapshot.Pinned, header: dict[str, Any], cancelled: Callable[[], bool]
    ) -> Callable[[Path], None]:
        while not self.go.wait(0.01):
            if cancelled():
                raise snapshot.WriteCancelled("cancelled")
        if self.fail:
            raise OSError("disk full")
        snapshot.write(self.scratch, pinned, header, cancelled)
        return lambda path: os.replace(self.scratch, path)

    def settle(self) -> int:
        """What the checker says once the write is over (polled as PySyncObj's ticks do)."""
        for _ in range(1000):
            state = self.writer.check()
            if state != WRITING:
                return state
            threading.Event().wait(0.01)
        raise AssertionError("the write never ended")


def _restored(path: Path, root: Path) -> dict[bytes, bytes]:
    fresh = RocksKV(root, k.SPACES)
    snapshot.read(path, [snapshot.Part("state", fresh, k.SPACES, APPLIED)])
    return dict(fresh.scan(k.META, b""))


def test_the_file_holds_the_stores_as_pinned_and_arrives_whole(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert h.writer.check() == IDLE
    h.writer.serialize(str(h.path) + ".tmp", RAFT)  # returns at once: the write waits for go
    assert h.writer.check() == WRITING
    # Entries applied while the file is written are not in it.
    h.state.write([(k.META, b"dag/b", b"2"), (k.META, b"dag/a", None), (*APPLIED, b"41")], sync=False)
    assert h.path.read_bytes() == b"the previous snapshot"  # nothing half-written there
    assert not Path(str(h.path) + ".tmp").exists()  # PySyncObj renames nothing over it
    h.go.set()
    assert h.settle() == SUCCESS
    assert snapshot.header(h.path)["applied"] == 40
    assert _restored(h.path, tmp_path / "fresh") == {b"dag/a": b"1"}
    assert h.writer.check() == IDLE


def test_a_failed_write_is_logged_and_the_previous_snapshot_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(tmp_path, fail=True)
    h.go.set()
    with caplog.at_level(logging.ERROR):
        h.writer.serialize(str(h.path) + ".tmp", RAFT)
        assert h.settle() == FAILED
    assert "snapshot at raft index 40 not written (disk full)" in caplog.text
    assert h.path.read_bytes() == b"the previous snapshot"
    h.fail = False  # PySyncObj tries again later
    h.writer.serialize(str(h.path) + ".tmp", RAFT)
    assert h.settle() == SUCCESS


def test_an_install_abandons_the_write_under_way(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.writer.serialize(str(h.path) + ".tmp", RAFT)
    h.path.write_bytes(b"a snapshot received from the leader")  # PySyncObj's install
    h.writer.abandon()  # the deserializer's first step: returns once the writer has ended
    h.go.set()
    assert h.settle() == FAILED
    assert h.path.read_bytes() == b"a snapshot received from the leader"


def test_a_stop_waits_for_the_writer_and_starts_no_other(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.writer.serialize(str(h.path) + ".tmp", RAFT)
    h.writer.close()
    assert not [t for t in threading.enumerate() if t.name == "raft-snapshot"]
    h.state.close()  # safe now: nothing reads the store any more
    h.writer.serialize(str(h.path) + ".tmp", RAFT)
    assert h.settle() == FAILED  # the abandoned one; no new write was started
    assert h.writer.check() == IDLE
    assert h.path.read_bytes() == b"the previous snapshot"


def test_a_halted_master_writes_no_snapshot_and_tries_again_later(tmp_path: Path, caplog: Any) -> None:
    """A master halted at an entry written by a newer kiok (``RaftCommandLog._halt``) leaves
    that entry and those after it unapplied while PySyncObj's own index goes on: a snapshot
    at its index would let PySyncObj drop them from the journal, and the upgraded master
    would skip them for good (found by review). The refusal ends FAILED, not IDLE: PySyncObj
    waits for an end before it serialises again (a review found IDLE stopped snapshots for
    good)."""
    h = Harness(tmp_path)
    why: list[str] = ["raft entry 41 was written by a newer kiok"]
    h.writer = SnapshotWriter(
        h.path, lambda: snapshot.pin(h.parts), h._write, halted=lambda: why[0] if why else None
    )
    with caplog.at_level(logging.ERROR, logger="kiok.store.snapshot_writer"):
        h.writer.serialize(str(tmp_path / "tmp"), RAFT)
        assert h.writer.check() == FAILED
    assert h.writer.check() == IDLE
    assert h.path.read_bytes() == b"the previous snapshot"
    assert "this master stopped applying the log (raft entry 41" in caplog.text
    why.clear()  # (a master that is not halted)
    h.go.set()
    h.writer.serialize(str(tmp_path / "tmp"), RAFT)
    assert h.settle() == SUCCESS
    h.state.close()
