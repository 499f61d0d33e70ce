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

With S3 archival (``kiok.master.archival``) the leader copies byte ranges to the object store
and proposes ``ArchiveLogs``; applying it (``apply_archived``) records the segment in the
``archive`` keyspace and deletes the local chunks it covers, on every master alike. The log's
size and offsets do not change: ``read`` serves an archived range from the object store
(``attach_archive``) and the rest from the local chunks, so no reader knows which tier
holds the bytes. Deleting a run's logs leaves a tombstone there, so that the leader deletes
the run's objects too (``archive_tombstones``): once archival has run on the store, for every
run that had logs, since a range may be uploaded before its ``ArchiveLogs`` commits (or
never does). While the tombstone waits, nothing is archived for the run: a re-run writes its
new log from offset 0 again, under the keys the old objects had.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from kiok.store.effects import Effects
from kiok.store.joblog_archive import Segment
from kiok.store.kv import KVStore, RocksKV, Write
from kiok.store.objects import ObjectStoreUnavailable

LOGS = "logs"
#: Unencrypted bookkeeping: the Raft index of the last applied batch of chunks.
REPLICATION = "replication"
#: Unencrypted: archived segments (``s`` run NUL task NUL start -> end), tombstones of runs
#: whose archived objects are to be deleted (``d`` run), and whether archival ever ran here.
ARCHIVE = "archive"
SPACES = (LOGS, REPLICATION, ARCHIVE)
#: keyspace -> the data key that encrypts its values
ENCRYPTION_KEYS = {LOGS: "joblog-encryption"}
APPLIED = b"applied"
#: In ``ARCHIVE``: present once an archiver watched this store or a segment was archived.
_ARCHIVAL_SEEN = b"archival"
_MAX_READ = 1024 * 1024


def _prefix(run_id: str, task_id: str) -> bytes:
    return f"{run_id}\x00{task_id}\x00".encode()


def _key(run_id: str, task_id: str, offset: int) -> bytes:
    return _prefix(run_id, task_id) + f"{offset:016x}".encode()


def _cursor_key(run_id: str, task_id: str) -> bytes:
    """Where a log's stream cursor lives: under the run's prefix (so it goes with the run's
    logs) but outside the task's chunk prefix (so reads never see it)."""
    return f"{run_id}\x00{task_id}\x01".encode()


def _segment_key(run_id: str, task_id: str, start: int) -> bytes:
    return b"s" + _prefix(run_id, task_id) + f"{start:016x}".encode()


def _tombstone_key(run_id: str) -> bytes:
    return b"d" + run_id.encode()


#: Reads archived bytes ``[start, end)`` of a segment from the object store.
ArchiveFetch = Callable[[Segment, int, int], bytes]


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
        self._archived: dict[tuple[str, str], int] = {}
        #: Logs appended to since the archiver last looked (None: no archiver is watching).
        self._dirty: set[tuple[str, str]] | None = None
        self._fetch: ArchiveFetch | None = None
        #: Whether ``_ARCHIVAL_SEEN`` is stored (None: not read yet).
        self._archival_seen: bool | None = None
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
        size = self._archived_end(run_id, task_id)
        for key, value in self._kv.scan(LOGS, _prefix(run_id, task_id), reverse=True):
            size = max(size, int(key[-16:], 16) + len(value))
            break
        self._sizes[(run_id, task_id)] = size
        return size

    # --- archival ------------------------------------------------------------------------

    def attach_archive(self, fetch: ArchiveFetch | None) -> None:
        """Where archived ranges are read from (None: S3 is not configured)."""
        self._fetch = fetch

    def archived_end(self, run_id: str, task_id: str) -> int:
        """How many of the log's first bytes are in the object store (and no longer local)."""
        with self._lock:
            return self._archived_end(run_id, task_id)

    def _archived_end(self, run_id: str, task_id: str) -> int:
        cached = self._archived.get((run_id, task_id))
        if cached is not None:
            return cached
        end = 0
        for _key, value in self._kv.scan(ARCHIVE, b"s" + _prefix(run_id, task_id), reverse=True):
            end = int(value)
            break
        self._archived[(run_id, task_id)] = end
        return end

    def holds_segment(self, seg: Segment) -> bool:
        """Whether ``seg`` is still an archived segment of its log (not deleted meanwhile)."""
        return self._segment_at(seg.run_id, seg.task_id, seg.start) == seg

    def _segment_at(self, run_id: str, task_id: str, offset: int) -> Segment | None:
        prefix = b"s" + _prefix(run_id, task_id)
        for key, value in self._kv.scan(
            ARCHIVE, prefix, after=_segment_key(run_id, task_id, offset + 1), reverse=True
        ):
            start, end = int(key[-16:], 16), int(value)
            return Segment(run_id, task_id, start, end) if start <= offset < end else None
        return None

    def _seen_archival(self) -> bool:
        if self._archival_seen is None:
            self._archival_seen = self._kv.get(ARCHIVE, _ARCHIVAL_SEEN) is not None
        return self._archival_seen

    def watch_unarchived(self, on: bool) -> list[tuple[str, str]]:
        """Start (or stop) noting which logs get bytes; on start, every log that has local
        bytes now (a scan of the local chunks, which archival keeps small). Starting records
        that archival runs here: from then on any deleted log may have objects (its tombstone
        is written whether or not a range of it committed)."""
        with self._lock:
            self._dirty = set() if on else None
            if on and not self._seen_archival():
                self._kv.write([(ARCHIVE, _ARCHIVAL_SEEN, b"")], sync=False)
                self._archival_seen = True
        if not on:
            return []
        found: set[tuple[str, str]] = set()
        for key, _ in self._kv.scan(LOGS, b""):
            parts = key.split(b"\x00")
            if len(parts) == 3 and len(parts[2]) == 16:
                found.add((parts[0].decode(), parts[1].decode()))
        return sorted(found)

    def take_dirty(self) -> list[tuple[str, str]]:
        """The logs appended to since the last call (while watching)."""
        with self._lock:
            if not self._dirty:
                return []
            out, self._dirty = sorted(self._dirty), set()
            return out

    def dirty_now(self) -> set[tuple[str, str]]:
        """The logs appended to since ``take_dirty`` was last called, left for it."""
        with self._lock:
            return set(self._dirty or ())

    def _touch(self, run_id: str, task_id: str) -> None:
        if self._dirty is not None:
            self._dirty.add((run_id, task_id))

    def local_chunks(self, run_id: str, task_id: str, start: int, end: int) -> Iterator[bytes]:
        """The stored bytes ``[start, end)`` as they are chunked (both must be chunk bounds)."""
        after = _key(run_id, task_id, start - 1) if start else None
        at = start
        for key, value in self._kv.scan(LOGS, _prefix(run_id, task_id), after=after):
            offset = int(key[-16:], 16)
            if offset >= end:
                return
            if offset != at:
                raise ObjectStoreUnavailable(f"log {run_id}/{task_id}: no local bytes at {at}")
            yield value[: end - offset]
            at = offset + len(value)

    def apply_archived(self, segments: Sequence[Segment]) -> list[Segment]:
        """Record segments as archived and drop the local chunks they cover. A segment that
        does not start where the archive ends (a replay, a deposed leader's) or reaches past
        the log is ignored: this is what keeps archived bytes from being lost or doubled. So
        is one of a run whose tombstone waits: uploaded before the run's logs were deleted, it
        holds the old bytes (which a re-run's log, from offset 0 again, may since have
        reached), and the tombstone deletes its object."""
        taken: list[Segment] = []
        with self._lock:
            writes: list[Write] = []
            for seg in segments:
                have = self._archived_end(seg.run_id, seg.task_id)
                if (
                    seg.start != have
                    or seg.end <= seg.start
                    or seg.end > self._size(seg.run_id, seg.task_id)
                    or self._kv.get(ARCHIVE, _tombstone_key(seg.run_id)) is not None
                ):
                    continue
                after = _key(seg.run_id, seg.task_id, seg.start - 1) if seg.start else None
                for key, value in self._kv.scan(LOGS, _prefix(seg.run_id, seg.task_id), after=after):
                    if int(key[-16:], 16) + len(value) > seg.end:
                        break
                    writes.append((LOGS, key, None))
                writes.append(
                    (ARCHIVE, _segment_key(seg.run_id, seg.task_id, seg.start), str(seg.end).encode())
                )
                self._archived[(seg.run_id, seg.task_id)] = seg.end
                taken.append(seg)
            if taken and not self._seen_archival():
                writes.append((ARCHIVE, _ARCHIVAL_SEEN, b""))
                self._archival_seen = True
            if writes:
                self._kv.write(writes, sync=False)
        return taken

    def apply_archive_effects(self, fx: Effects) -> None:
        """What an applied batch archived or forgot (``ArchiveLogs``, ``ForgetArchivedRuns``)."""
        if fx.log_archived:
            self.apply_archived([Segment(*seg) for seg in fx.log_archived])
        if fx.archive_forgotten:
            self.forget_tombstones(fx.archive_forgotten)

    def archive_tombstones(self, limit: int = 100) -> list[str]:
        """Runs whose logs were deleted since archival ran: their objects must go."""
        out = []
        for key, _ in self._kv.scan(ARCHIVE, b"d"):
            out.append(key[1:].decode())
            if len(out) >= limit:
                break
        return out

    def forget_tombstones(self, run_ids: Sequence[str]) -> None:
        with self._lock:
            self._kv.write([(ARCHIVE, _tombstone_key(r), None) for r in run_ids], sync=False)

    def has_tombstone(self, run_id: str) -> bool:
        """Whether the run's archived objects wait to be deleted (``archive_tombstones``)."""
        return self._kv.get(ARCHIVE, _tombstone_key(run_id)) is not None

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
            self._touch(run_id, task_id)
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
            for key in sizes:
                self._touch(*key)

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete every log (each task's and the run log) of these runs; returns the chunks
        deleted. Idempotent: deleting what is gone changes nothing. A run with archived
        ranges, or with local bytes once archival ran here (an upload whose ``ArchiveLogs``
        had not committed may be in S3), gets a tombstone: the leader deletes its objects,
        then forgets it."""
        with self._lock:
            writes: list[Write] = []
            for run_id in run_ids:
                prefix = f"{run_id}\x00".encode()
                chunks = [(LOGS, key, None) for key, _ in self._kv.scan(LOGS, prefix)]
                segments = [(ARCHIVE, key, None) for key, _ in self._kv.scan(ARCHIVE, b"s" + prefix)]
                writes += chunks + segments
                if segments or (chunks and self._seen_archival()):
                    writes.append((ARCHIVE, _tombstone_key(run_id), b""))
                for cache in (self._sizes, self._archived, self._cursors):
                    for key in [key for key in cache if key[0] == run_id]:
                        del cache[key]
            self._kv.write(writes, sync=False)
            return len(writes)

    def forget_sizes(self) -> None:
        """Drop cached sizes (the store was replaced under this object by a snapshot)."""
        with self._lock:
            self._sizes.clear()
            self._cursors.clear()
            self._archived.clear()
            self._archival_seen = None

    def read(
        self, run_id: str, task_id: str, offset: int, limit: int = _MAX_READ, *, ended: bool = False
    ) -> tuple[bytes, int]:
        """Bytes from ``offset`` (at most ``limit``, cut at a UTF-8 character boundary)
        and the offset to read next. Archived bytes come from the object store (a blocking
        call: the API reads in a thread). Two cases where a cut would leave a reader
        following the log stuck for ever (the lifecycle and day-one probes of session 27):
        a first character longer than ``limit`` comes whole (alone); and once the log has
        ``ended`` (its task has), bytes at its end that begin a character never finished
        come too (the reader decodes them as replacement characters)."""
        raw = self._read(run_id, task_id, offset, max(limit, _LONGEST_CHAR))
        window = raw[:limit]
        data = _cut_at_char_boundary(window)
        if not data and raw:
            first = _char_length(raw[0])
            data = raw[:first] if len(raw) >= first else b""
        if not data and raw and ended and offset + len(raw) >= self.size(run_id, task_id):
            data = raw  # the log's end: the first bytes of a character never finished, as one
        return data, offset + len(data)

    def _read(self, run_id: str, task_id: str, offset: int, limit: int) -> bytes:
        out = bytearray()
        at = offset
        while at < self.archived_end(run_id, task_id) and len(out) < limit:
            seg = self._segment_at(run_id, task_id, at)
            if seg is None:
                break
            if self._fetch is None:
                raise ObjectStoreUnavailable(
                    f"log {run_id}/{task_id} is archived in S3, but kiok.joblog.s3 is not configured"
                )
            part = self._fetch(seg, at, min(seg.end, at + limit - len(out)))
            if not part:
                break
            out += part
            at += len(part)
        if len(out) >= limit:
            return bytes(out[:limit])
        local, _ = self._read_local(run_id, task_id, at, limit - len(out))
        return bytes(out) + local

    def _read_local(self, run_id: str, task_id: str, offset: int, limit: int) -> tuple[bytes, int]:
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
        return data, offset + len(data)

    def close(self) -> None:
        self._kv.close()


#: The most bytes one UTF-8 character takes.
_LONGEST_CHAR = 4


def _char_length(lead: int) -> int:
    """How many bytes the UTF-8 character that ``lead`` begins takes (1 for a byte no
    character begins with: it decodes as one replacement character)."""
    return 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4 if lead >> 3 == 0b11110 else 1


def _cut_at_char_boundary(data: bytes) -> bytes:
    """Drop an incomplete UTF-8 sequence at the end so the next read starts on a character."""
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b & 0xC0 != 0x80:  # a lead byte or ASCII
            return data if _char_length(b) <= back else data[:-back]
    return data
