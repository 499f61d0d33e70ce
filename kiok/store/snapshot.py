"""Store snapshots for Raft log compaction: a stream of the state store's raw key-values.

The file is a sequence of msgpack objects: a header ``{"format", "applied", ...}`` (the
Raft index the store had applied, plus what the caller adds), then ``[keyspace, key,
value]`` records, then ``None``. Values are copied below the encryption layer, so a
snapshot holds ciphertext only, like the store. Restoring replaces the store's whole
content: first the applied index is reset (a crash halfway leaves a store that asks for the
snapshot again, never one that claims entries it lacks), then every keyspace is emptied and
refilled, and the snapshot's index is written last, with an fsync.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from kiok.store import keys as k
from kiok.store.kv import RocksKV, Write

FORMAT = 1
_CHUNK = 2000


@dataclass(frozen=True)
class Loaded:
    header: dict[str, Any]
    index: int
    #: False when the store already had everything the snapshot holds (a restart).
    restored: bool


def _applied(kv: RocksKV, applied_key: bytes) -> int:
    raw = kv.get(k.KMS, applied_key)
    return 0 if raw is None else int(raw)


def write(path: Path, kv: RocksKV, header: dict[str, Any], *, applied_key: bytes) -> None:
    packer = msgpack.Packer(use_bin_type=True)
    with open(path, "wb") as f:
        f.write(packer.pack({"format": FORMAT, "applied": _applied(kv, applied_key), **header}))
        for space in k.SPACES:
            for key, value in kv.scan(space, b""):
                f.write(packer.pack([space, key, value]))
        f.write(packer.pack(None))
        f.flush()
        os.fsync(f.fileno())


def read(path: Path, kv: RocksKV, *, applied_key: bytes) -> Loaded:
    with open(path, "rb") as f:
        unpacker = msgpack.Unpacker(f, raw=False, max_buffer_size=1 << 30)
        header = next(unpacker)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError(f"{path}: not a kiok store snapshot")
        index = int(header["applied"])
        if _applied(kv, applied_key) >= index:
            return Loaded(header, index, restored=False)
        kv.write([(k.KMS, applied_key, b"0")], sync=True)
        for space in k.SPACES:
            doomed: list[Write] = []
            for key, _ in kv.scan(space, b""):
                doomed.append((space, key, None))
                if len(doomed) >= _CHUNK:
                    kv.write(doomed, sync=False)
                    doomed = []
            kv.write(doomed, sync=False)
        chunk: list[Write] = []
        for record in unpacker:
            if record is None:
                break
            space, key, value = record
            if space == k.KMS and key == applied_key:
                continue
            chunk.append((space, key, value))
            if len(chunk) >= _CHUNK:
                kv.write(chunk, sync=False)
                chunk = []
        else:
            raise ValueError(f"{path}: truncated snapshot")
        kv.write([*chunk, (k.KMS, applied_key, str(index).encode())], sync=True)
        return Loaded(header, index, restored=True)
