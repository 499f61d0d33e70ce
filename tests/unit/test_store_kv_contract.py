"""One contract suite for the KV interface, run against the in-memory twin and RocksDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kiok.store.kv import KVStore, MemoryKV, RocksKV


@pytest.fixture(params=["memory", "rocksdb"])
def kv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KVStore]:
    store: KVStore = (
        MemoryKV(["a", "b"]) if request.param == "memory" else RocksKV(tmp_path / "db", ["a", "b"])
    )
    yield store
    store.close()


def test_write_is_atomic_across_spaces_and_readable(kv: KVStore) -> None:
    kv.write([("a", b"k1", b"v1"), ("b", b"k1", b"other")], sync=True)
    assert kv.get("a", b"k1") == b"v1" and kv.get("b", b"k1") == b"other"
    kv.write([("a", b"k1", None)], sync=False)
    assert kv.get("a", b"k1") is None and kv.get("b", b"k1") == b"other"


def test_scan_orders_bounds_and_resumes(kv: KVStore) -> None:
    keys = [b"p/1", b"p/2", b"p/3", b"q/1", b"o/9", b"p\xff"]
    kv.write([("a", k, k) for k in keys], sync=False)
    assert [k for k, _ in kv.scan("a", b"p/")] == [b"p/1", b"p/2", b"p/3"]
    assert [k for k, _ in kv.scan("a", b"p/", reverse=True)] == [b"p/3", b"p/2", b"p/1"]
    assert [k for k, _ in kv.scan("a", b"p/", after=b"p/1")] == [b"p/2", b"p/3"]
    assert [k for k, _ in kv.scan("a", b"p/", after=b"p/3", reverse=True)] == [b"p/2", b"p/1"]
    assert [k for k, _ in kv.scan("a", b"zz")] == []
    assert [k for k, _ in kv.scan("b", b"p/")] == []


def test_rocksdb_survives_reopen(tmp_path: Path) -> None:
    db = RocksKV(tmp_path / "db", ["a"])
    db.write([("a", b"x", b"1")], sync=True)
    db.close()
    again = RocksKV(tmp_path / "db", ["a"])
    assert again.get("a", b"x") == b"1"
    again.close()
