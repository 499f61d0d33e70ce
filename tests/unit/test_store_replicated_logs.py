"""Job logs on replicated masters: ``AppendLogs`` through ``apply()``, chunks appended once
per Raft index (a journal replay appends nothing), and store snapshots that carry both the
state and the job-log store and replace a stale copy whole."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import msgpack
import pytest

from kiok.errors import InvalidInput
from kiok.store import commands as c
from kiok.store import joblog, snapshot
from kiok.store import keys as k
from kiok.store.apply import apply
from kiok.store.effects import Effects
from kiok.store.joblog import JobLogStore
from kiok.store.kv import MemoryKV, RocksKV
from kiok.store.txn import Txn


def test_append_logs_becomes_an_effect_in_order_and_writes_no_state() -> None:
    kv = MemoryKV(list(k.SPACES))
    seed = Txn(kv)
    seed.put(k.META, k.run("r1"), {"runId": "r1", "state": "RUNNING"})  # master lines need their run
    kv.write(seed.writes(), sync=False)
    txn, fx = Txn(kv), Effects()
    apply(txn, c.AppendLogs(at_ms=1, chunks=[["r1", "t", b"one\n"], ["r1", "__run__", b"x\n"]]), fx)
    assert fx.log_appends == [("r1", "t", b"one\n", None), ("r1", "__run__", b"x\n", None)]
    assert txn.writes() == []


@pytest.mark.parametrize("chunk", [["r1", "t"], ["r1", 3, b"x"], ["r1", "t", "text, not bytes"]])
def test_a_malformed_chunk_is_refused_naming_the_shape(chunk: list[object]) -> None:
    with pytest.raises(InvalidInput, match="append_logs"):
        apply(Txn(MemoryKV(list(k.SPACES))), c.AppendLogs(at_ms=1, chunks=[chunk]), Effects())


def test_a_replicated_entry_is_appended_once_even_when_replayed() -> None:
    logs = JobLogStore(MemoryKV(list(joblog.SPACES)))
    logs.apply_replicated(5, [("r", "t", b"ab", None), ("r", "t", b"cd", None), ("r", "u", b"z", None)])
    logs.apply_replicated(
        5, [("r", "t", b"ab", None), ("r", "t", b"cd", None), ("r", "u", b"z", None)]
    )  # replay
    logs.apply_replicated(4, [("r", "t", b"old", None)])  # older than what the store has
    logs.apply_replicated(6, [("r", "t", b"ef", None)])
    assert logs.read("r", "t", 0) == (b"abcdef", 6)
    assert logs.read("r", "t", 3) == (b"def", 6)
    assert logs.read("r", "u", 0) == (b"z", 1)
    assert logs.applied_index() == 6


def _parts(root: Path) -> tuple[list[snapshot.Part], RocksKV, RocksKV]:
    state = RocksKV(root / "state", k.SPACES)
    logs = RocksKV(root / "joblog", joblog.SPACES)
    parts = [
        snapshot.Part("state", state, k.SPACES, (k.KMS, k.RAFT_APPLIED.encode())),
        snapshot.Part("joblog", logs, joblog.SPACES, (joblog.REPLICATION, joblog.APPLIED)),
    ]
    return parts, state, logs


def test_a_snapshot_replaces_both_stores_of_a_stale_master(tmp_path: Path) -> None:
    src, src_state, src_logs = _parts(tmp_path / "a")
    src_state.write([(k.META, b"dag/x", b"new"), (k.KMS, k.RAFT_APPLIED.encode(), b"40")], sync=False)
    JobLogStore(src_logs).apply_replicated(40, [("r", "t", b"hello\n", None)])
    snapshot.write(tmp_path / "snap", src, {"extra": 1})

    dst, dst_state, dst_logs = _parts(tmp_path / "b")
    dst_state.write([(k.META, b"dag/gone", b"old"), (k.KMS, k.RAFT_APPLIED.encode(), b"7")], sync=False)
    JobLogStore(dst_logs).apply_replicated(7, [("r", "stale", b"bye\n", None)])
    loaded = snapshot.read(tmp_path / "snap", dst)
    assert loaded.restored and loaded.index == 40 and loaded.header["extra"] == 1
    assert [key for key, _ in dst_state.scan(k.META, b"")] == [b"dag/x"]
    restored = JobLogStore(dst_logs)
    assert restored.read("r", "t", 0) == (b"hello\n", 6)
    assert restored.read("r", "stale", 0) == (b"", 0)
    assert restored.applied_index() == 40 and dst[0].applied_index() == 40

    # Reading it again (a restart) changes nothing: the store already has that index.
    dst_state.write([(k.META, b"dag/y", b"later"), (k.KMS, k.RAFT_APPLIED.encode(), b"41")], sync=False)
    assert not snapshot.read(tmp_path / "snap", dst).restored
    assert dst_state.get(k.META, b"dag/y") == b"later"


def test_a_truncated_snapshot_is_refused_and_leaves_stores_asking_again(tmp_path: Path) -> None:
    src, src_state, _ = _parts(tmp_path / "a")
    src_state.write([(k.META, b"dag/x", b"v" * 100), (k.KMS, k.RAFT_APPLIED.encode(), b"9")], sync=False)
    snapshot.write(tmp_path / "snap", src, {})
    data = (tmp_path / "snap").read_bytes()
    (tmp_path / "snap").write_bytes(data[:-3])
    dst, dst_state, _ = _parts(tmp_path / "b")
    dst_state.write([(k.KMS, k.RAFT_APPLIED.encode(), b"3")], sync=False)
    with pytest.raises(ValueError, match="truncated"):
        snapshot.read(tmp_path / "snap", dst)
    assert dst[0].applied_index() == 3  # refused before anything was touched


def test_a_snapshot_missing_records_in_the_middle_is_refused_before_touching_the_stores(
    tmp_path: Path,
) -> None:
    """PySyncObj could lose chunks of the file on a reconnect and still deliver it: a stream
    without some whole records still parses, so the digest is what refuses it."""
    src, src_state, _ = _parts(tmp_path / "a")
    src_state.write([(k.META, f"dag/{i}".encode(), b"v") for i in range(3)], sync=False)
    src_state.write([(k.IAM, b"user/u", b"x"), (k.KMS, k.RAFT_APPLIED.encode(), b"9")], sync=False)
    snapshot.write(tmp_path / "snap", src, {})
    data = (tmp_path / "snap").read_bytes()
    records = list(msgpack.Unpacker(io.BytesIO(data[:-32]), raw=False))
    assert [r[:3] for r in records[1:-1]] == [["sst", "state", k.META], ["sst", "state", k.IAM]]
    packer = msgpack.Packer(use_bin_type=True)
    damaged = b"".join(
        packer.pack(r) for r in records if not isinstance(r, list) or r[:3] != ["sst", "state", k.IAM]
    )
    (tmp_path / "snap").write_bytes(damaged + data[-32:])
    dst, dst_state, _ = _parts(tmp_path / "b")
    dst_state.write([(k.META, b"dag/mine", b"x"), (k.KMS, k.RAFT_APPLIED.encode(), b"3")], sync=False)
    with pytest.raises(ValueError, match="digest does not match"):
        snapshot.read(tmp_path / "snap", dst)
    assert dst[0].applied_index() == 3 and dst_state.get(k.META, b"dag/mine") == b"x"


def test_a_keyspace_travels_as_table_pieces_and_is_installed_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A keyspace's table file is cut in pieces (8 MiB; 4 KiB here) and put together again;
    the applied index travels in the header only, and is written last."""
    monkeypatch.setattr(snapshot, "_PIECE", 4096)
    src, src_state, _ = _parts(tmp_path / "a")
    rows = [(k.META, f"run/{i:06d}".encode(), os.urandom(40)) for i in range(5000)]
    src_state.write([*rows, (k.KMS, k.RAFT_APPLIED.encode(), b"77")], sync=False)
    snapshot.write(tmp_path / "snap", src, {})
    data = (tmp_path / "snap").read_bytes()
    records = list(msgpack.Unpacker(io.BytesIO(data[:-32]), raw=False))
    pieces = [r for r in records[1:-1] if r[:3] == ["sst", "state", k.META]]
    assert len(pieces) > 10 and all(len(r[3]) <= 4096 for r in pieces)
    assert not any(r[2] == k.KMS for r in records[1:-1])  # the index alone was there: no table
    dst, dst_state, _ = _parts(tmp_path / "b")
    dst_state.write([(k.META, b"run/zzz", b"stale"), (k.KMS, k.RAFT_APPLIED.encode(), b"5")], sync=False)
    assert snapshot.read(tmp_path / "snap", dst).restored
    assert list(dst_state.scan(k.META, b"")) == [(key, value) for _, key, value in rows]
    assert dst[0].applied_index() == 77


def test_a_format_3_snapshot_is_still_read(tmp_path: Path) -> None:
    """Key-values one by one, with a digest (what masters wrote before table files)."""
    packer = msgpack.Packer(use_bin_type=True)
    body = b"".join(
        packer.pack(x)
        for x in [
            {"format": 3, "applied": 12},
            ["state", k.META, b"dag/x", b"v"],
            ["state", k.IAM, b"u", b"w"],
            None,
        ]
    )
    (tmp_path / "snap").write_bytes(body + hashlib.blake2b(body, digest_size=32).digest())
    dst, dst_state, _ = _parts(tmp_path / "b")
    assert snapshot.read(tmp_path / "snap", dst).restored
    assert dst_state.get(k.META, b"dag/x") == b"v" and dst_state.get(k.IAM, b"u") == b"w"
    assert dst[0].applied_index() == 12


def test_a_snapshot_written_before_the_digest_is_still_read(tmp_path: Path) -> None:
    packer = msgpack.Packer(use_bin_type=True)
    old = [{"format": 2, "applied": 9}, ["state", k.META, b"dag/x", b"v"], None]
    (tmp_path / "snap").write_bytes(b"".join(packer.pack(x) for x in old))
    dst, dst_state, _ = _parts(tmp_path / "b")
    assert snapshot.read(tmp_path / "snap", dst).restored
    assert dst_state.get(k.META, b"dag/x") == b"v" and dst[0].applied_index() == 9
