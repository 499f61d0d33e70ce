"""The job-log store: task output and run logs, kept apart from cluster metadata.

Each (run, task) log is an append-only byte stream stored as chunks keyed by their start
offset, so a read at any byte offset seeks straight to its chunk. Appends are not fsync'd
one by one; ``append(..., sync=True)`` (used for a task's final batch) makes everything
before it durable, which is what a reader relies on once the task is reported finished.

With replicated masters the chunks arrive as committed ``AppendLogs`` commands, applied on
Raft's thread while the API reads on the event loop's: sizes are computed and cached under a
lock, and each applied batch records its Raft index (``REPLICATION`` keyspace) so a journal
replay does not append twice.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from kiok.store.kv import KVStore, RocksKV, Write

LOGS = "logs"
#: Unencrypted bookkeeping: the Raft index of the last applied batch of chunks.
REPLICATION = "replication"
SPACES = (LOGS, REPLICATION)
#: keyspace -> the data key that encrypts its values
ENCRYPTION_KEYS = {LOGS: "joblog-encryption"}
APPLIED = b"applied"
_MAX_READ = 1024 * 1024


def _prefix(run_id: str, task_id: str) -> bytes:
    return f"{run_id}\x00{task_id}\x00".encode()


def _key(run_id: str, task_id: str, offset: int) -> bytes:
    return _prefix(run_id, task_id) + f"{offset:016x}".encode()


class JobLogStore:
    def __init__(self, kv: KVStore) -> None:
        self._kv = kv
        self._sizes: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> JobLogStore:
        return cls(RocksKV(path, SPACES))

    def size(self, run_id: str, task_id: str) -> int:
        with self._lock:
            return self._size(run_id, task_id)

    def _size(self, run_id: str, task_id: str) -> int:
        cached = self._sizes.get((run_id, task_id))
        if cached is not None:
            return cached
        size = 0
        for key, value in self._kv.scan(LOGS, _prefix(run_id, task_id), reverse=True):
            size = int(key[-16:], 16) + len(value)
            break
        self._sizes[(run_id, task_id)] = size
        return size

    def append(self, run_id: str, task_id: str, data: bytes, *, sync: bool = False) -> int:
        """Append ``data`` and return the new size. With ``sync`` the write (and every
        earlier one) is fsync'd on return; without, it survives a crash of this process."""
        with self._lock:
            offset = self._size(run_id, task_id)
            if data:
                self._kv.write([(LOGS, _key(run_id, task_id, offset), data)], sync=sync)
                self._sizes[(run_id, task_id)] = offset + len(data)
            return offset + len(data)

    def applied_index(self) -> int:
        raw = self._kv.get(REPLICATION, APPLIED)
        return 0 if raw is None else int(raw)

    def apply_replicated(self, index: int, chunks: Sequence[tuple[str, str, bytes]]) -> None:
        """Append the chunks of Raft entry ``index`` in one write with the index itself;
        an entry this store already has (a journal replay) changes nothing."""
        with self._lock:
            if index <= self.applied_index():
                return
            writes: list[Write] = []
            sizes: dict[tuple[str, str], int] = {}
            for run_id, task_id, data in chunks:
                if not data:
                    continue
                offset = sizes.get((run_id, task_id))
                if offset is None:
                    offset = self._size(run_id, task_id)
                writes.append((LOGS, _key(run_id, task_id, offset), data))
                sizes[(run_id, task_id)] = offset + len(data)
            writes.append((REPLICATION, APPLIED, str(index).encode()))
            self._kv.write(writes, sync=False)
            self._sizes.update(sizes)

    def forget_sizes(self) -> None:
        """Drop cached sizes (the store was replaced under this object by a snapshot)."""
        with self._lock:
            self._sizes.clear()

    def read(self, run_id: str, task_id: str, offset: int, limit: int = _MAX_READ) -> tuple[bytes, int]:
        """Bytes from ``offset`` (at most ``limit``, cut at a UTF-8 character boundary)
        and the offset to read next."""
        prefix = _prefix(run_id, task_id)
        first_chunk = 0  # start offset of the chunk holding ``offset``
        for key, _ in self._kv.scan(LOGS, prefix, after=_key(run_id, task_id, offset + 1), reverse=True):
            first_chunk = int(key[-16:], 16)
            break
        after = _key(run_id, task_id, first_chunk - 1) if first_chunk else None
        out = bytearray()
        for key, value in self._kv.scan(LOGS, prefix, after=after):
            chunk_start = int(key[-16:], 16)
            out += value[max(0, offset - chunk_start) :]
            if len(out) >= limit:
                break
        data = bytes(out[:limit])
        data = _cut_at_char_boundary(data)
        return data, offset + len(data)

    def close(self) -> None:
        self._kv.close()


def _cut_at_char_boundary(data: bytes) -> bytes:
    """Drop an incomplete UTF-8 sequence at the end so the next read starts on a character."""
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b & 0xC0 != 0x80:  # a lead byte or ASCII
            need = (
                1
                if b < 0x80
                else 2
                if b >> 5 == 0b110
                else 3
                if b >> 4 == 0b1110
                else 4
                if b >> 3 == 0b11110
                else 1
            )
            return data if need <= back else data[:-back]
    return data
