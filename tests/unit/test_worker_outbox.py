"""The worker's outbox: what ``put`` returned for is on disk until acknowledged, in order,
across a new Outbox on the same directory (a restarted worker) — and encrypted with keys
the master hands over, so the files alone read nothing."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import msgpack
import pytest

from kiok.errors import KiokError
from kiok.protocol.wire import outbox_keys_from_wire, outbox_keys_to_wire
from kiok.security.kms import Keyring, worker_outbox_keyring
from kiok.worker.outbox import Outbox

RING = Keyring.generate()


def opened(directory: Path, ring: Keyring = RING, worker: str = "w1") -> Outbox:
    box = Outbox(directory)
    box.set_keys(worker_outbox_keyring(ring, worker))
    return box


def test_put_survives_reopen_in_order_until_acked(tmp_path: Path) -> None:
    box = opened(tmp_path / "outbox")
    keys = [box.put({"run": "r", "n": i}) for i in range(3)]
    box.ack(keys[1])
    again = opened(tmp_path / "outbox")  # as after kill -9 and restart
    assert [(k, r["n"]) for k, r in again.pending()] == [(keys[0], 0), (keys[2], 2)]
    assert again.put({"run": "r", "n": 3}) > keys[2]  # keys keep growing after a restart
    again.ack(keys[0])
    again.ack(keys[0])  # acknowledging twice is harmless
    assert [r["n"] for _, r in again.pending()] == [2, 3]
    assert stat.S_IMODE((tmp_path / "outbox").stat().st_mode) == 0o700


def test_junk_in_the_directory_is_dropped(tmp_path: Path) -> None:
    box = opened(tmp_path / "outbox")
    (tmp_path / "outbox" / "0000000000000099.rep").write_bytes(b"\xc1")
    key = box.put({"run": "r"})
    assert [k for k, _ in box.pending()] == [key]


def test_files_are_ciphertext_and_read_only_with_the_workers_keys(tmp_path: Path) -> None:
    box = opened(tmp_path / "outbox")
    key = box.put({"run": "r", "tasks": {"t": {"error": "password=hunter2-secret"}}})
    raw = b"".join(p.read_bytes() for p in (tmp_path / "outbox").iterdir())
    assert b"hunter2" not in raw and b"tasks" not in raw
    # Before a WELCOME there are no keys: nothing is read (and nothing dropped).
    assert Outbox(tmp_path / "outbox").pending() == []
    # Another worker's keys (or another cluster's) cannot open it.
    assert opened(tmp_path / "outbox", worker="w2").pending() == []
    assert not any((tmp_path / "outbox").iterdir())
    assert key


def test_a_rotated_key_still_reads_older_entries(tmp_path: Path) -> None:
    box = opened(tmp_path / "outbox")
    old = box.put({"n": 1})
    rotated = RING.rotated("joblog-encryption")
    wire = outbox_keys_to_wire(worker_outbox_keyring(rotated, "w1"))
    again = Outbox(tmp_path / "outbox")
    again.set_keys(outbox_keys_from_wire({"outboxKeys": wire}))
    new = again.put({"n": 2})
    assert [(k, r["n"]) for k, r in again.pending()] == [(old, 1), (new, 2)]


def test_put_without_keys_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KiokError, match="no key yet"):
        Outbox(tmp_path / "outbox").put({"n": 1})


def test_a_report_the_disk_cannot_take_is_kept_in_memory_and_written_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: ``put`` raised the disk's ``OSError`` into the driver's flush, after it had
    handed the report over: the task's end was never sent and the run showed it running."""
    box = opened(tmp_path / "outbox")
    first = box.put({"run": "r", "n": 0})
    # The next report's temporary file is /dev/full: the kernel answers ENOSPC, as a full disk.
    (tmp_path / "outbox" / f"{first + 1:016d}.tmp").symlink_to("/dev/full")
    with caplog.at_level("ERROR", logger="kiok.worker.outbox"):
        second = box.put({"run": "r2", "term": 3, "epoch": 1, "n": 1})
    assert [m for m in caplog.messages if "cannot write" in m and "No space left" in m]
    assert [(k, r["n"]) for k, r in box.pending()] == [(first, 0), (second, 1)]
    assert box.held_runs()["r2"] == (3, 1)  # still this worker's to claim
    assert not (tmp_path / "outbox" / f"{second:016d}.tmp").exists()  # no half-written file
    assert opened(tmp_path / "outbox").pending() == [(first, {"run": "r", "n": 0})]  # memory only
    # The disk takes the next one: the kept report is written first, in order.
    caplog.clear()
    with caplog.at_level("WARNING", logger="kiok.worker.outbox"):
        third = box.put({"run": "r", "n": 2})
    assert [m for m in caplog.messages if "writes to" in m and "again" in m]
    assert [r["n"] for _, r in opened(tmp_path / "outbox").pending()] == [0, 1, 2]
    box.ack(second)
    assert [k for k, _ in opened(tmp_path / "outbox").pending()] == [first, third]


def test_a_report_kept_in_memory_is_acknowledged_like_any(tmp_path: Path) -> None:
    box = opened(tmp_path / "outbox")
    (tmp_path / "outbox" / f"{1:016d}.tmp").symlink_to("/dev/full")
    key = box.put({"run": "r", "n": 0})
    box.ack(key)
    assert box.pending() == [] and box.held_runs() == {}


def test_a_report_whose_directory_sync_fails_is_kept_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: the file was renamed into place, then the directory's fsync failed; the
    report was kept in memory as well, so ``pending`` listed it twice and ``ack`` of the
    memory copy left the file (and the run claimed) behind."""
    import os as real_os

    box = opened(tmp_path / "outbox")
    real_fsync = real_os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(real_os.fstat(fd).st_mode):
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr("kiok.worker.outbox.os.fsync", fsync)
    key = box.put({"run": "r", "n": 0})
    assert [k for k, _ in box.pending()] == [key]
    box.ack(key)
    assert box.pending() == [] and box.held_runs() == {}
    monkeypatch.undo()
    assert opened(tmp_path / "outbox").pending() == []


def test_a_restarted_worker_knows_its_held_runs_before_any_key(tmp_path: Path) -> None:
    """Found by the failover probe (session 27): the fence was inside the ciphertext only, so
    a worker restarted with reports waiting claimed none of their runs in its first hello (no
    master had handed it keys yet), and the masters gave the runs to new drivers."""
    box = opened(tmp_path / "outbox")
    box.put({"run": "r1", "term": 3, "epoch": 7, "tasks": {"t": {"state": "SUCCESS"}}})
    box.put({"run": "r1", "term": 3, "epoch": 8, "tasks": {}})
    box.put({"run": "r2", "term": 2, "epoch": 1, "tasks": {}})
    assert Outbox(tmp_path / "outbox").held_runs() == {"r1": (3, 8), "r2": (2, 1)}


def test_a_forged_clear_header_is_dropped_with_its_claim(tmp_path: Path) -> None:
    box = opened(tmp_path / "outbox")
    box.put({"run": "r1", "term": 3, "epoch": 7, "tasks": {}})
    (path,) = (tmp_path / "outbox").iterdir()
    raw = path.read_bytes()
    size = int.from_bytes(raw[:2], "big")
    forged = msgpack.packb(["someone-elses-run", 3, 7])
    path.write_bytes(len(forged).to_bytes(2, "big") + forged + raw[2 + size :])
    restarted = opened(tmp_path / "outbox")
    assert restarted.held_runs() == {"someone-elses-run": (3, 7)}  # until keys arrive
    assert restarted.pending() == []  # the header is authenticated with the report
    assert restarted.held_runs() == {}


def test_reports_of_the_earlier_format_still_read(tmp_path: Path) -> None:
    box = opened(tmp_path / "outbox")
    record = {"run": "r9", "term": 1, "epoch": 1, "tasks": {"t": {"state": "SUCCESS"}}}
    name = "0000000000000005.rep"
    sealed = box._cipher.encrypt(msgpack.packb(record), name.encode())  # type: ignore[union-attr]
    (tmp_path / "outbox" / name).write_bytes(sealed)
    again = opened(tmp_path / "outbox")
    assert [(k, r["run"]) for k, r in again.pending()] == [(5, "r9")]
    assert again.held_runs() == {"r9": (1, 1)}
    assert again.put({"run": "r", "tasks": {}}) == 6
    again.ack(5)
    assert [k for k, _ in again.pending()] == [6]


def test_files_whose_fence_reads_only_with_keys_are_counted_until_read(tmp_path: Path) -> None:
    """The failover re-probe (session 27): a worker upgraded with reports of the earlier
    format (fence encrypted) claimed nothing in its first hello; now it says it holds more
    runs than it names (``Hello.more_runs``), and names them once its keys read them."""
    box = opened(tmp_path / "outbox")
    record = {"run": "r9", "term": 1, "epoch": 1, "tasks": {}}
    name = "0000000000000005.rep"
    sealed = box._cipher.encrypt(msgpack.packb(record), name.encode())  # type: ignore[union-attr]
    (tmp_path / "outbox" / name).write_bytes(sealed)
    restarted = Outbox(tmp_path / "outbox")
    assert (restarted.unknown_fences, restarted.held_runs()) == (1, {})
    restarted.set_keys(worker_outbox_keyring(RING, "w1"))
    restarted.pending()
    assert (restarted.unknown_fences, restarted.held_runs()) == (0, {"r9": (1, 1)})


@pytest.mark.parametrize("fence", [["", 1, 1], ["r", -1, 0], ["r", 1, 2**63], ["r" * 1025, 1, 1], "junk"])
def test_a_header_no_hello_could_carry_is_no_claim(tmp_path: Path, fence: Any) -> None:
    """The failover re-probe: a header naming a fence the master's hello check refuses (an
    empty run, a negative term) made every hello refused: the worker never got back in."""
    (tmp_path / "outbox").mkdir()
    header = msgpack.packb(fence)
    (tmp_path / "outbox" / "0000000000000090.rpf").write_bytes(
        len(header).to_bytes(2, "big") + header + b"\x01" * 60
    )
    box = Outbox(tmp_path / "outbox")
    assert (box.held_runs(), box.unknown_fences) == ({}, 1)


def test_odd_entries_stop_neither_the_start_nor_the_replay(tmp_path: Path) -> None:
    """The failover re-probe: a file named ``².rpf`` ("²" is a digit to ``isdigit``, not to
    ``int``) stopped the worker at start; a directory named like a report broke every
    replay, so the worker reconnected for ever."""
    box = opened(tmp_path / "outbox")
    key = box.put({"run": "r", "term": 1, "epoch": 1, "tasks": {}})
    (tmp_path / "outbox" / "².rpf").write_bytes(b"x")
    (tmp_path / "outbox" / "0000000000000200.rpf").mkdir()
    restarted = opened(tmp_path / "outbox")
    assert [k for k, _ in restarted.pending()] == [key]
