"""The job-log store: task output and run logs, kept apart from cluster metadata.

Each (run, task) log is an append-only byte stream stored as chunks keyed by their start
offset, so a read at any byte offset seeks straight to its chunk. Appends are not fsync'd
one by one; ``append(..., sync=True)`` (used for a task's final batch) makes everything
before it durable, which is what a reader relies on once the task is reported finished.

With replicated masters the chunks arrive as committed ``AppendLogs`` commands, applied on
Raft's thread while the API reads on the event loop's: sizes are computed and cached under a
lock, and each applied batch records its Raft index (``REPLICATION`` keyspace) so a journal
replay does not append twice.

A worker's batches carry their place in a *stream*: (term, epoch) of the driver that wrote
them and the byte offset within that driver's output for the task. The store keeps, per
(run, task), the stream it last took bytes from and how far (the cursor, stored with the
bytes in one write), so a batch replayed after a reconnect or a leader failover adds only
the bytes the store does not have: replays are idempotent.
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


def _cursor_key(run_id: str, task_id: str) -> bytes:
    """Where a log's stream cursor lives: under the run's prefix (so it goes with the run's
    logs) but outside the task's chunk prefix (so reads never see it)."""
    return f"{run_id}\x00{task_id}\x01".encode()


#: A worker batch's place: (term, epoch, byte offset in that driver's stream for the task).
Stream = tuple[int, int, int]
Cursor = tuple[int, int, int]


def _fresh_bytes(cursor: Cursor | None, stream: Stream, data: bytes) -> tuple[bytes, Cursor]:
    """The part of ``data`` (at ``stream``) not yet stored, and the cursor after it. A batch of
    another driver (fence) starts a new stream; a gap (bytes never received) is appended as is."""
    term, epoch, offset = stream
    have = cursor[2] if cursor is not None and cursor[:2] == (term, epoch) else 0
    end = offset + len(data)
    if end <= have:
        return b"", (term, epoch, have)
    return data[max(0, have - offset) :], (term, epoch, end)


class JobLogStore:
    def __init__(self, kv: KVStore) -> None:
        self._kv = kv
        self._sizes: dict[tuple[str, str], int] = {}
        self._cursors: dict[tuple[str, str], Cursor | None] = {}
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

    def _cursor(self, run_id: str, task_id: str) -> Cursor | None:
        key = (run_id, task_id)
        if key in self._cursors:
            return self._cursors[key]
        raw = self._kv.get(LOGS, _cursor_key(run_id, task_id))
        found = None
        if raw is not None:
            term, epoch, offset = (int(x) for x in raw.split(b":"))
            found = (term, epoch, offset)
        self._cursors[key] = found
        return found

    def _stream_write(
        self, run_id: str, task_id: str, data: bytes, stream: Stream, offset: int
    ) -> tuple[list[Write], bytes]:
        """The writes that append the fresh part of a worker batch at ``offset``, cursor included."""
        fresh, cursor = _fresh_bytes(self._cursor(run_id, task_id), stream, data)
        self._cursors[(run_id, task_id)] = cursor
        writes: list[Write] = [(LOGS, _cursor_key(run_id, task_id), ":".join(map(str, cursor)).encode())]
        if fresh:
            writes.append((LOGS, _key(run_id, task_id, offset), fresh))
        return writes, fresh

    def append(
        self, run_id: str, task_id: str, data: bytes, *, sync: bool = False, stream: Stream | None = None
    ) -> int:
        """Append ``data`` and return the new size. With ``sync`` the write (and every
        earlier one) is fsync'd on return; without, it survives a crash of this process.
        With ``stream`` (a worker's batch) only bytes the log does not have yet are added."""
        with self._lock:
            offset = self._size(run_id, task_id)
            if not data:
                return offset
            if stream is None:
                writes: list[Write] = [(LOGS, _key(run_id, task_id, offset), data)]
            else:
                writes, data = self._stream_write(run_id, task_id, data, stream, offset)
            self._kv.write(writes, sync=sync)
            self._sizes[(run_id, task_id)] = offset + len(data)
            return offset + len(data)

    def applied_index(self) -> int:
        raw = self._kv.get(REPLICATION, APPLIED)
        return 0 if raw is None else int(raw)

    def apply_replicated(self, index: int, chunks: Sequence[tuple[str, str, bytes, Stream | None]]) -> None:
        """Append the chunks of Raft entry ``index`` in one write with the index itself;
        an entry this store already has (a journal replay) changes nothing. A chunk with a
        stream (a worker's batch) adds only the bytes the log does not have yet."""
        with self._lock:
            if index <= self.applied_index():
                return
            writes: list[Write] = []
            sizes: dict[tuple[str, str], int] = {}
            for run_id, task_id, data, stream in chunks:
                if not data:
                    continue
                offset = sizes.get((run_id, task_id))
                if offset is None:
                    offset = self._size(run_id, task_id)
                if stream is None:
                    writes.append((LOGS, _key(run_id, task_id, offset), data))
                else:
                    more, data = self._stream_write(run_id, task_id, data, stream, offset)
                    writes += more
                sizes[(run_id, task_id)] = offset + len(data)
            writes.append((REPLICATION, APPLIED, str(index).encode()))
            self._kv.write(writes, sync=False)
            self._sizes.update(sizes)

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete every log (each task's and the run log) of these runs; returns the chunks
        deleted. Idempotent: deleting what is gone changes nothing."""
        with self._lock:
            writes: list[Write] = []
            for run_id in run_ids:
                prefix = f"{run_id}\x00".encode()
                writes += [(LOGS, key, None) for key, _ in self._kv.scan(LOGS, prefix)]
                for key in [key for key in self._sizes if key[0] == run_id]:
                    del self._sizes[key]
            self._kv.write(writes, sync=False)
            return len(writes)

    def forget_sizes(self) -> None:
        """Drop cached sizes (the store was replaced under this object by a snapshot)."""
        with self._lock:
            self._sizes.clear()
            self._cursors.clear()

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
