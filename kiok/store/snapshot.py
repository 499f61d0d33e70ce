"""Store snapshots for Raft log compaction: a stream of the stores' raw key-values.

A master's replicated state lives in two RocksDB stores, the state store and the job-log
store; each records the Raft index it has applied. The file is a sequence of msgpack
objects: a header ``{"format", "applied", ...}`` (the index the state store had applied, plus
what the caller adds), then ``["sst", store, keyspace, piece]`` records: each keyspace as a
RocksDB table file (SST) cut in pieces of up to 8 MiB, then ``None``, then the BLAKE2b
digest (32 bytes) of everything before it. Values are copied below the encryption layer,
so a snapshot holds no secret in plaintext, like the stores (the ``kms`` keyspace's keyring is
wrapped by the root key; its counters are plain).

Why table files: installing is then RocksDB taking whole files into each keyspace
(``RocksKV.ingest``), with no write per key. At 1,000,000 runs (10 million keys) that is
the difference between ~21 s of Python putting keys one by one and a few seconds of
copying bytes; writing a table file costs less than packing each key-value too.

The digest is checked before anything is touched: a stream missing a run of records can
parse (PySyncObj, which used to carry the file, lost chunks of it on reconnects; it now
carries only a ``kiok.store.snapshot_ref`` and the file is fetched over HTTP).
Format 3 files (one ``[store, keyspace, key, value]`` record per key) and format 2 files
(the same without a digest) are still read.

A snapshot is written from a ``Pinned`` view: taken (``pin``) where entries are applied,
so it is the stores exactly at one Raft index, and read whole later, from another thread
(``kiok.store.snapshot_writer``), while the stores move on.

Restoring replaces every store's whole content: first each applied index is reset (a crash
halfway leaves stores that ask for the snapshot again, never one that claims entries it
lacks), then every keyspace is emptied and refilled, and the snapshot's index is written
last, with an fsync — the state store's last of all, since it decides whether a restore is
needed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgpack

from kiok.store.kv import PinnedKV, RocksKV, Write, write_table

FORMAT = 4
#: Formats ``read`` accepts: 2 has no digest, 2 and 3 carry key-values one by one.
_READABLE = (2, 3, 4)
_DIGEST_SIZE = 32
_CHUNK = 2000
#: A table file travels in pieces of this size (one msgpack ``bin`` each).
_PIECE = 8 << 20


@dataclass(frozen=True)
class Part:
    """One store in the snapshot; ``applied`` is where it records its Raft index."""

    name: str
    kv: RocksKV
    spaces: tuple[str, ...]
    applied: tuple[str, bytes]

    def applied_index(self) -> int:
        raw = self.kv.get(*self.applied)
        return 0 if raw is None else int(raw)

    def mark(self, index: int) -> None:
        self.kv.write([(*self.applied, str(index).encode())], sync=True)


@dataclass(frozen=True)
class Pinned:
    """The stores' content at one Raft index (``pin``), readable once from any thread; call
    ``release`` when done (before the stores close)."""

    #: The state store's applied index when pinned: the snapshot's index.
    index: int
    #: (part name, its keyspaces, their pinned view, where it records its index), the state
    #: store first.
    views: tuple[tuple[str, tuple[str, ...], PinnedKV, tuple[str, bytes]], ...]

    def release(self) -> None:
        for _, _, view, _ in self.views:
            view.release()


class WriteCancelled(Exception):
    """``write`` gave up because ``cancelled()`` said so; no file is left behind."""


def pin(parts: Sequence[Part]) -> Pinned:
    """Pin every store as it is now. Call it where entries are applied (the Raft thread), so
    that no entry is applied between reading the index and pinning the stores (nothing else
    writes to them); it is quick: no value is read."""
    index = parts[0].applied_index()
    return Pinned(index, tuple((part.name, part.spaces, part.kv.pin(), part.applied) for part in parts))


@dataclass(frozen=True)
class Loaded:
    header: dict[str, Any]
    index: int
    #: False when the stores already had everything the snapshot holds (a restart).
    restored: bool


def write(
    path: Path,
    source: Sequence[Part] | Pinned,
    header: dict[str, Any],
    cancelled: Callable[[], bool] = lambda: False,
) -> bytes:
    """Write ``source`` (pinned now when given as parts: ``parts[0]`` is the state store, whose
    applied index the snapshot is taken at) to ``path``, durably. Returns the digest the file
    ends with (what names it in a ``snapshot_ref``). ``cancelled`` is asked every few thousand
    records: True removes the file and raises WriteCancelled. Releases a pinned view. Each
    store's applied index is left out: ``read`` writes it last."""
    pinned = source if isinstance(source, Pinned) else pin(source)
    packer = msgpack.Packer(use_bin_type=True)
    digest = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    try:
        with open(path, "wb") as f, tempfile.TemporaryDirectory(dir=path.parent, prefix=".sst-") as tmp:

            def put(obj: object) -> None:
                data = packer.pack(obj)
                digest.update(data)
                f.write(data)

            put({"format": FORMAT, "applied": pinned.index, **header})
            table = Path(tmp) / "space.sst"
            for name, spaces, view, (applied_space, applied_key) in pinned.views:
                for space in spaces:
                    records = _checked(view.scan_all(space), cancelled, path)
                    skip = applied_key if space == applied_space else None
                    if write_table(records, table, skip) == 0:
                        continue
                    with open(table, "rb") as t:
                        while piece := t.read(_PIECE):
                            put(["sst", name, space, piece])
                    table.unlink()
            put(None)
            f.write(digest.digest())
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        pinned.release()
    return digest.digest()


def _checked(
    records: Iterator[tuple[bytes, bytes]], cancelled: Callable[[], bool], path: Path
) -> Iterator[tuple[bytes, bytes]]:
    """``records``, asking ``cancelled`` every ``_CHUNK`` of them (WriteCancelled when True)."""
    for n, record in enumerate(records):
        if n % _CHUNK == 0 and cancelled():
            raise WriteCancelled(f"{path}: snapshot write cancelled")
        yield record


def read(path: Path, parts: Sequence[Part]) -> Loaded:
    """Install the snapshot at ``path`` unless the stores already hold its index; ValueError
    (stores untouched) when it is not a snapshot or its digest does not match."""
    by_name = {part.name: part for part in parts}
    with open(path, "rb") as f:
        unpacker = msgpack.Unpacker(f, raw=False, max_buffer_size=1 << 30)
        header = next(unpacker)
        if not isinstance(header, dict) or header.get("format") not in _READABLE:
            raise ValueError(f"{path}: not a kiok store snapshot (format {FORMAT})")
        index = int(header["applied"])
        if parts[0].applied_index() >= index:
            return Loaded(header, index, restored=False)
        if header["format"] >= 3:
            _check_digest(path)
        if header["format"] >= 4:
            _install_tables(path, unpacker, parts, index)
            return Loaded(header, index, restored=True)
        for part in reversed(parts):
            part.mark(0)
            for space in part.spaces:
                part.kv.clear(space)
        pending: dict[str, list[Write]] = {part.name: [] for part in parts}
        for record in unpacker:
            if record is None:
                break
            name, space, key, value = record
            part = by_name[name]
            if (space, key) == part.applied:
                continue
            chunk = pending[name]
            chunk.append((space, key, value))
            if len(chunk) >= _CHUNK:
                part.kv.write(chunk, sync=False)
                chunk.clear()
        else:
            raise ValueError(f"{path}: truncated snapshot")
        for part in reversed(parts):
            part.kv.write([*pending[part.name], (*part.applied, str(index).encode())], sync=True)
        return Loaded(header, index, restored=True)


def _install_tables(path: Path, unpacker: msgpack.Unpacker, parts: Sequence[Part], index: int) -> None:
    """(Format 4) Put each keyspace's table file together beside ``path``; then, as for the
    older formats, reset every store's applied index, empty each keyspace and take its table
    file in, and write the applied indexes last (the state store's last of all), with an
    fsync."""
    by_name = {part.name: part for part in parts}
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".sst-") as tmp:
        tables: dict[tuple[str, str], Path] = {}
        out: BinaryIO | None = None
        try:
            for record in unpacker:
                if record is None:
                    break
                tag, name, space, piece = record
                if tag != "sst" or name not in by_name or space not in by_name[name].spaces:
                    raise ValueError(f"{path}: unexpected record {tag!r} {name!r} {space!r}")
                if (name, space) not in tables:
                    if out is not None:
                        out.close()
                    tables[(name, space)] = Path(tmp) / f"{len(tables)}.sst"
                    out = open(tables[(name, space)], "wb")  # noqa: SIM115 (closed at the next table)
                assert out is not None
                out.write(piece)
            else:
                raise ValueError(f"{path}: truncated snapshot")
        finally:
            if out is not None:
                out.close()
        for part in reversed(parts):
            part.mark(0)
        for part in reversed(parts):
            for space in part.spaces:
                part.kv.clear(space)
                if (part.name, space) in tables:
                    part.kv.ingest(space, tables[(part.name, space)])
        for part in reversed(parts):
            part.mark(index)


def header(path: Path) -> dict[str, Any]:
    """The header of the snapshot at ``path`` (its first object), without reading the rest."""
    with open(path, "rb") as f:
        first = next(msgpack.Unpacker(f, raw=False, max_buffer_size=1 << 30))
    if not isinstance(first, dict) or first.get("format") not in _READABLE:
        raise ValueError(f"{path}: not a kiok store snapshot (format {FORMAT})")
    return first


def _check_digest(path: Path) -> None:
    """ValueError unless the file ends in the digest of the rest of it."""
    size = path.stat().st_size - _DIGEST_SIZE
    if size <= 0:
        raise ValueError(f"{path}: truncated snapshot")
    digest = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    with open(path, "rb") as f:
        left = size
        while left:
            block = f.read(min(left, 1 << 20))
            if not block:
                break
            digest.update(block)
            left -= len(block)
        if digest.digest() != f.read(_DIGEST_SIZE):
            raise ValueError(f"{path}: damaged or truncated snapshot (its digest does not match)")
