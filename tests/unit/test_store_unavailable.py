"""A store that cannot write: RocksDB's bare "IO error" becomes one ``StoreUnavailable``
(503), told once, after which the store refuses every write without touching the disk; and
the data-directory watch that stops a process whose directory was removed or replaced."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from kiok.errors import StoreUnavailable
from kiok.master.http_errors import status_for
from kiok.roots.data_watch import DataDirWatch
from kiok.roots.startup import lock_data_dir
from kiok.store.kv import RocksKV

NO_SPACE = "IO error: No space left on device: While appending to file: /d/state/000004.log"


class _FullDisk:
    """Stands in for the Rdict: every write fails as RocksDB's does on a full disk."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, *_: Any) -> None:
        self.writes += 1
        raise Exception(NO_SPACE)


def test_a_failed_write_is_store_unavailable_told_once_and_fences_the_store(tmp_path: Path) -> None:
    kv = RocksKV(tmp_path / "state", ["a"], "state store")
    told: list[StoreUnavailable] = []
    kv.on_unavailable = told.append
    real, disk = kv._db, _FullDisk()
    kv._db = disk  # type: ignore[assignment]
    try:
        with pytest.raises(StoreUnavailable) as first:
            kv.write([("a", b"k", b"v")], sync=True)
        assert first.value.message == (
            f"the state store cannot write ({NO_SPACE}): kiok stops; restart it once the disk has room"
        )
        assert status_for(first.value) == 503
        with pytest.raises(StoreUnavailable) as again:
            kv.write([("a", b"k", b"v")], sync=False)
        assert again.value is first.value and disk.writes == 1  # refused without a write
        assert told == [first.value]
        assert kv.failed is first.value
    finally:
        kv._db = real
    kv.close()  # a failed store closes without a flush


def test_the_watch_sees_a_removed_or_replaced_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    lock = lock_data_dir(data)
    watch = DataDirWatch(lock)
    assert watch.problem() is None
    (data / "kiok.lock").unlink()
    (data / "kiok.lock").write_text("")  # another lock file in its place
    assert watch.problem() is not None
    shutil.rmtree(data)
    data.mkdir()  # a new, empty directory where it was
    why = watch.problem()
    assert why is not None and str(data) in why and "removed or replaced" in why
    shutil.rmtree(data)
    assert watch.problem() == why
    lock.release()
