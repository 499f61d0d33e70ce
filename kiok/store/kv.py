"""Key-value stores behind one narrow interface: RocksDB (rocksdict) and an in-memory twin.

A ``KVStore`` holds named keyspaces (RocksDB column families) and applies a batch of
writes atomically across them. Values are opaque bytes here; encoding and, later,
envelope encryption happen above this layer (``kiok.store.codec``).
"""

from __future__ import annotations

import bisect
import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from rocksdict import (
    AccessType,
    Checkpoint,
    IngestExternalFileOptions,
    Options,
    Rdict,
    SstFileWriter,
    WriteBatch,
    WriteOptions,
)

from kiok.errors import KiokError, StoreUnavailable

#: (keyspace, key, value or None for a delete)
Write = tuple[str, bytes, bytes | None]


class StoreUnreadable(KiokError):
    """RocksDB refused to open a store directory (damaged, unreadable): one line naming the
    directory and RocksDB's own words, and, for a damaged store, the way back."""

    code = "store_unreadable"

    @classmethod
    def opening(cls, path: Path, e: Exception) -> StoreUnreadable:
        problem = " ".join(str(e).split()) or type(e).__name__
        hint = ""
        if problem.startswith("Corruption"):
            hint = (
                f": it is damaged; move {path.parent} aside, start on an empty data directory with "
                "the same master key and restore the newest backup "
                "(kiok admin restore, docs/operations.md#backup-and-restore)"
            )
        return cls(f"cannot open the store {path}: {problem}{hint}")

    @classmethod
    def check_current(cls, path: Path) -> None:
        """Refuse a store directory that holds RocksDB's files but not its ``CURRENT``: opened
        so, RocksDB would write a new, empty store over them (and delete their tables)."""
        if not path.is_dir() or (path / "CURRENT").exists():
            return
        names = [p.name for p in path.iterdir()]
        if any(n.startswith("MANIFEST-") or n.endswith((".sst", ".log")) for n in names):
            raise cls.opening(path, Exception("Corruption: CURRENT is missing beside the store's files"))


def unavailable(name: str, e: Exception) -> StoreUnavailable:
    """The error of a write the store ``name`` could not make: RocksDB's own words (an "IO
    error" naming the file) and what the operator does about it."""
    problem = " ".join(str(e).split()) or type(e).__name__
    if "No space left" in problem:
        remedy = "the disk has room"
    elif "Read-only file system" in problem:
        remedy = "its file system is writable"
    elif "No such file or directory" in problem:
        remedy = "its data directory is back (or restore a backup)"
    else:
        remedy = "its data directory is writable"
    return StoreUnavailable(f"the {name} cannot write ({problem}): kiok stops; restart it once {remedy}")


class KVStore(Protocol):
    """Contract: ``write`` is atomic across keyspaces and, with ``sync``, durable on return.
    Reads see every completed ``write``. ``scan`` yields keys with ``prefix`` in key order
    (reverse order when ``reverse``), starting strictly after ``after`` when given."""

    def get(self, space: str, key: bytes) -> bytes | None: ...

    def scan(
        self, space: str, prefix: bytes, *, after: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]: ...

    def write(self, writes: Sequence[Write], *, sync: bool) -> None: ...

    def close(self) -> None: ...


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix``."""
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return None


def _raw(items: Iterable[tuple[object, object]]) -> Iterator[tuple[bytes, bytes]]:
    """rocksdict's items typed as what raw mode gives: bytes keys and values."""
    for k, v in items:
        assert isinstance(k, bytes) and isinstance(v, bytes)
        yield k, v


def _space_options() -> Options:
    """A keyspace's options. Keys that live briefly (a run's ``active/`` marker, its entry
    under the state it passes through) leave a tombstone each; in a history of a million
    runs a scan over such a range would step over a million of them. An SST file with many
    deletions is marked for compaction at once, which drops them."""
    opts = Options(raw_mode=True)
    opts.add_compact_on_deletion_collector_factory(_DELETION_WINDOW, _DELETION_TRIGGER, 0.5)
    return opts


#: Any window of this many entries in an SST file with at least the trigger's deletions
#: (or half its entries deletions) gets the file compacted.
_DELETION_WINDOW = 10_000
_DELETION_TRIGGER = 2_000


def write_table(records: Iterable[tuple[bytes, bytes]], dest: Path, skip: bytes | None = None) -> int:
    """Write ``records`` (strictly increasing keys, as a keyspace scan gives them; ``skip``
    left out) as a RocksDB table file at ``dest``, for ``RocksKV.ingest``. Returns how many it
    holds; with none, no file is left (RocksDB cannot make an empty one)."""
    writer = SstFileWriter(options=Options(raw_mode=True))
    writer.open(str(dest))
    count = 0
    for key, value in records:
        if key != skip:
            writer[key] = value
            count += 1
    if count:
        writer.finish()
    else:
        del writer
        dest.unlink(missing_ok=True)
    return count


class PinnedKV:
    """Every keyspace of a ``RocksKV`` as it was at one instant (``RocksKV.pin``), to be read
    once, whole, from any thread, while the store takes new writes. Each keyspace is a RocksDB
    iterator created under the store's write lock: an iterator sees the store as of its
    creation, so no batch falls between two keyspaces. (rocksdict 0.3's ``Snapshot`` would be
    the obvious tool, but iterating one reads the live store.) The store keeps the versions
    the view sees until ``release``; release it before closing the store."""

    def __init__(self, scans: dict[str, Iterator[tuple[bytes, bytes]]]) -> None:
        self._scans = scans

    def scan_all(self, space: str) -> Iterator[tuple[bytes, bytes]]:
        """The keyspace's key-values in key order, as pinned (once: a second call raises KeyError)."""
        return self._scans.pop(space)

    def release(self) -> None:
        self._scans.clear()


class RocksKV:
    """RocksDB with one column family per keyspace."""

    @staticmethod
    def peek(
        path: Path, spaces: Iterable[str], space: str, keys: Iterable[bytes]
    ) -> dict[bytes, bytes | None]:
        """Read a few values from an existing store without writing anything to its
        directory (read-only open); {} when there is no store there yet. ``StoreUnreadable``
        when RocksDB cannot open it."""
        StoreUnreadable.check_current(path)
        if not (path / "CURRENT").exists():
            return {}
        try:
            db = Rdict(
                str(path),
                Options(raw_mode=True),
                column_families={s: Options(raw_mode=True) for s in spaces},
                access_type=AccessType.read_only(),
            )
        except Exception as e:  # rocksdict raises a bare Exception("Corruption: ...")
            raise StoreUnreadable.opening(path, e) from None
        try:
            cf = db.get_column_family(space)
            return {k: cf.get(k) for k in keys}
        finally:
            del cf
            db.close()

    def __init__(self, path: Path, spaces: Iterable[str], name: str = "store") -> None:
        """``name`` (``state store``) is what an error of this store calls it."""
        StoreUnreadable.check_current(path)
        path.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.create_missing_column_families(True)
        self._spaces = list(spaces)
        try:
            self._db = Rdict(str(path), opts, column_families={s: _space_options() for s in self._spaces})
        except Exception as e:  # rocksdict raises a bare Exception("Corruption: ...")
            raise StoreUnreadable.opening(path, e) from None
        self._cf = {s: self._db.get_column_family(s) for s in self._spaces}
        self._handles = {s: self._db.get_column_family_handle(s) for s in self._spaces}
        self._sync = WriteOptions()
        self._sync.sync = True
        self._nosync = WriteOptions()
        self._lock = threading.Lock()
        self._fail_lock = threading.Lock()
        self._name = name
        #: Why this store takes no more writes (``fail``), once it does not.
        self._failed: StoreUnavailable | None = None
        #: Told once, on the thread that wrote, when a write fails (``StoreUnavailable``).
        self.on_unavailable: Callable[[StoreUnavailable], None] = lambda err: None

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Around every change to the store: a RocksDB error becomes ``StoreUnavailable``
        (rocksdict raises a bare ``Exception("IO error: ...")``). RocksDB keeps such an error
        (a failed log append leaves it read-only until reopened), so the first one fences the
        store: later writes are refused at once, without touching the disk."""
        if self._failed is not None:
            raise self._failed
        try:
            yield
        except Exception as e:
            raise self._unwritable(e) from None

    def _unwritable(self, e: Exception) -> StoreUnavailable:
        """The store's answer to RocksDB's error ``e``: fenced, told once, and the error."""
        err = unavailable(self._name, e)
        if self.fail(err):
            self.on_unavailable(err)
        return err

    def fail(self, err: StoreUnavailable) -> bool:
        """Take no more writes, each refused with ``err`` (the first reason is kept); True the
        first time. Closing a failed store flushes nothing to its directory."""
        with self._fail_lock:
            if self._failed is not None:
                return False
            self._failed = err
            return True

    @property
    def failed(self) -> StoreUnavailable | None:
        return self._failed

    def get(self, space: str, key: bytes) -> bytes | None:
        value = self._cf[space].get(key)
        assert value is None or isinstance(value, bytes)
        return value

    def scan(
        self, space: str, prefix: bytes, *, after: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        cf = self._cf[space]
        if reverse:
            bound = after if after is not None else _prefix_end(prefix)
            it = cf.items(backwards=True, from_key=bound) if bound is not None else cf.items(backwards=True)
            for k, v in _raw(it):
                if bound is not None and k >= bound:
                    continue
                if not k.startswith(prefix):
                    return
                yield k, v
        else:
            for k, v in _raw(cf.items(from_key=after if after is not None and after > prefix else prefix)):
                if after is not None and k <= after:
                    continue
                if not k.startswith(prefix):
                    return
                yield k, v

    def write(self, writes: Sequence[Write], *, sync: bool) -> None:
        if not writes:
            return
        if self._failed is not None:
            raise self._failed
        wb = WriteBatch(raw_mode=True)
        for space, key, value in writes:
            if value is None:
                wb.delete(key, self._handles[space])
            else:
                wb.put(key, value, self._handles[space])
        if self._failed is not None:  # as ``_writing`` (inline: this is every batch's path)
            raise self._failed
        with self._lock:
            try:
                self._db.write(wb, self._sync if sync else self._nosync)
            except Exception as e:
                raise self._unwritable(e) from None

    def clear(self, space: str) -> None:
        """Delete every key of ``space`` at once (one range deletion, whatever its size)."""
        cf = self._cf[space]
        last = next(iter(cf.keys(backwards=True)), None)
        if last is None:
            return
        assert isinstance(last, bytes)
        with self._lock, self._writing():
            cf.delete_range(b"", last + b"\x00", self._nosync)

    def ingest(self, space: str, table: Path) -> None:
        """Take a table file from ``write_table`` into ``space`` (moved, not copied): its keys
        are visible at once, over what the keyspace held. Durable on return (RocksDB writes
        its manifest); bulk loading without a write per key."""
        opts = IngestExternalFileOptions()
        opts.set_move_files(True)
        with self._lock, self._writing():
            self._cf[space].ingest_external_file([str(table)], opts)

    def pin(self) -> PinnedKV:
        """Every keyspace as it is now, to read later from another thread (``PinnedKV``)."""
        with self._lock:
            return PinnedKV({space: _raw(cf.items()) for space, cf in self._cf.items()})

    def checkpoint(self, dest: Path) -> None:
        """A consistent copy of the whole store in ``dest`` (which must not exist): RocksDB
        flushes the memtable, then hard-links the SST files and copies the rest (backups)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        Checkpoint(self._db).create_checkpoint(str(dest))

    def compact(self) -> None:
        """Compact every keyspace whole: deleted data (retention, tombstones) leaves the disk
        now rather than when RocksDB gets to it."""
        with self._writing():
            for cf in self._cf.values():
                cf.compact_range(None, None)

    def close(self) -> None:
        # Column-family objects keep the database open (and its LOCK held) until released.
        self._cf.clear()
        self._handles.clear()
        if self._failed is None:
            self._db.close()  # flushes the memtable to a new table file
        else:
            # Nothing more goes to a directory that is full, read-only or no longer this
            # store's: dropped, RocksDB closes without a flush (its log holds every write).
            del self._db


class MemoryKV:
    """In-memory twin of ``RocksKV`` for pure tests; same contract, nothing durable."""

    def __init__(self, spaces: Iterable[str]) -> None:
        self._data: dict[str, dict[bytes, bytes]] = {s: {} for s in spaces}
        self._keys: dict[str, list[bytes]] = {s: [] for s in self._data}

    def get(self, space: str, key: bytes) -> bytes | None:
        return self._data[space].get(key)

    def scan(
        self, space: str, prefix: bytes, *, after: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        keys = self._keys[space]
        lo = bisect.bisect_left(keys, prefix)
        end = _prefix_end(prefix)
        hi = bisect.bisect_left(keys, end) if end is not None else len(keys)
        selected = keys[lo:hi]
        if after is not None:
            selected = [k for k in selected if (k < after if reverse else k > after)]
        for k in reversed(selected) if reverse else list(selected):
            yield k, self._data[space][k]

    def write(self, writes: Sequence[Write], *, sync: bool) -> None:
        for space, key, value in writes:
            data, keys = self._data[space], self._keys[space]
            if value is None:
                if key in data:
                    del data[key]
                    keys.pop(bisect.bisect_left(keys, key))
            else:
                if key not in data:
                    bisect.insort(keys, key)
                data[key] = value

    def close(self) -> None:
        pass
