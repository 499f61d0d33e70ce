"""Store snapshots for Raft log compaction: a stream of the stores' raw key-values.

A master's replicated state lives in two RocksDB stores, the state store and the job-log
store; each records the Raft index it has applied. The file is a sequence of msgpack
objects: a header ``{"format", "applied", ...}`` (the index the state store had applied, plus
what the caller adds), then ``[store, keyspace, key, value]`` records, then ``None``. Values
are copied below the encryption layer, so a snapshot holds ciphertext only, like the stores.

Restoring replaces every store's whole content: first each applied index is reset (a crash
halfway leaves stores that ask for the snapshot again, never one that claims entries it
lacks), then every keyspace is emptied and refilled, and the snapshot's index is written
last, with an fsync — the state store's last of all, since it decides whether a restore is
needed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from kiok.store.kv import RocksKV, Write

FORMAT = 2
_CHUNK = 2000


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
class Loaded:
    header: dict[str, Any]
    index: int
    #: False when the stores already had everything the snapshot holds (a restart).
    restored: bool


def write(path: Path, parts: Sequence[Part], header: dict[str, Any]) -> None:
    """``parts[0]`` is the state store, whose applied index the snapshot is taken at."""
    packer = msgpack.Packer(use_bin_type=True)
    with open(path, "wb") as f:
        f.write(packer.pack({"format": FORMAT, "applied": parts[0].applied_index(), **header}))
        for part in parts:
            for space in part.spaces:
                for key, value in part.kv.scan(space, b""):
                    f.write(packer.pack([part.name, space, key, value]))
        f.write(packer.pack(None))
        f.flush()
        os.fsync(f.fileno())


def read(path: Path, parts: Sequence[Part]) -> Loaded:
    by_name = {part.name: part for part in parts}
    with open(path, "rb") as f:
        unpacker = msgpack.Unpacker(f, raw=False, max_buffer_size=1 << 30)
        header = next(unpacker)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError(f"{path}: not a kiok store snapshot (format {FORMAT})")
        index = int(header["applied"])
        if parts[0].applied_index() >= index:
            return Loaded(header, index, restored=False)
        for part in reversed(parts):
            part.mark(0)
            _clear(part)
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


def _clear(part: Part) -> None:
    for space in part.spaces:
        doomed: list[Write] = []
        for key, _ in part.kv.scan(space, b""):
            doomed.append((space, key, None))
            if len(doomed) >= _CHUNK:
                part.kv.write(doomed, sync=False)
                doomed = []
        part.kv.write(doomed, sync=False)
