"""Raft snapshots written off the Raft thread: PySyncObj's ``serializer`` and
``serializeChecker`` for kiok's store snapshots (``SnapshotWriter``).

Theory of operation. PySyncObj compacts its log on its tick thread (the Raft thread, where
entries are applied too): it calls ``serializer(tmp, (last, prev, cluster))`` and then renames
``tmp`` onto its snapshot file, synchronously. Written there, a snapshot stopped the master
from answering Raft messages for as long as the write took (32 s at 1,000,000 runs), and
followers elected another leader. With a ``serializeChecker``, PySyncObj asks the checker at
every tick: SERIALIZING (it neither starts another snapshot nor sends its file to a follower
meanwhile), then SUCCESS (it drops the log up to the snapshot's index) or FAILED (it logs
"Failed to store full dump" and tries again later). So:

    Raft thread                                   writer thread
    serialize(): pin the stores (no value read),
      start the writer, return          ───────►  write the file from the pinned view
    check() -> SERIALIZING  (ticks, applies go on)    (scratch path, fsync'd)
    check() -> publish: rename into place ◄─────  done (or failed, or cancelled)
              -> SUCCESS / FAILED (logged)

- The pinned view (``snapshot.pin``) is taken where entries are applied, so the file holds the
  stores exactly at the snapshot's index, whatever is applied while it is written.
- ``serialize`` leaves nothing at ``tmp``: PySyncObj's rename then fails, which it swallows
  (with a checker set, the checker alone reports the outcome). A half-written file is never at
  PySyncObj's path: the writer only touches its own scratch file.
- The finished file is moved into place by ``check``, on the Raft thread, not by the writer:
  that keeps the move ordered with PySyncObj's own uses of the path. An install (a snapshot
  received from the leader) first ``abandon``-s the write under way, so an older snapshot
  never replaces the one just received.
- A failed write is logged and reported FAILED; the previous snapshot stays where it was.
- ``close`` (stopping) cancels the write under way, waits for the writer (it checks every few
  thousand records) and refuses new ones: the stores can then be closed safely.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pysyncobj.config import SERIALIZER_STATE  # type: ignore[import-untyped]

from kiok.store import snapshot

log = logging.getLogger(__name__)

#: PySyncObj's answers to ``check``.
IDLE: int = SERIALIZER_STATE.NOT_SERIALIZING
WRITING: int = SERIALIZER_STATE.SERIALIZING
SUCCESS: int = SERIALIZER_STATE.SUCCESS
FAILED: int = SERIALIZER_STATE.FAILED

#: (writer thread) Write the pinned stores with the header; raise WriteCancelled when asked.
#: Returns how to put the finished file at PySyncObj's path (run on the Raft thread).
WriteFile = Callable[[snapshot.Pinned, dict[str, Any], Callable[[], bool]], Callable[[Path], None]]


@dataclass
class _Job:
    """One snapshot being written; the writer thread fills in ``publish`` or ``error``."""

    index: int
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    publish: Callable[[Path], None] | None = None
    error: BaseException | None = None
    seconds: float = 0.0


class SnapshotWriter:
    """PySyncObj's ``serializer`` (``serialize``) and ``serializeChecker`` (``check``); both
    are called on the Raft thread, ``close`` on any."""

    def __init__(
        self,
        path: Path,
        pin: Callable[[], snapshot.Pinned],
        write: WriteFile,
        *,
        pause_s: float = 0.0,
        halted: Callable[[], str | None] = lambda: None,
    ) -> None:
        """``path``: PySyncObj's snapshot file (its ``fullDumpFile``). ``pin`` (Raft thread):
        the stores as they are now. ``pause_s`` (``kiok.raft.snapshot.write.pause.ms``, a
        testing aid): the writer waits this long before writing. ``halted``: why the log stopped
        being applied, if it did (no snapshot is written then)."""
        self._path = path
        self._pin = pin
        self._write = write
        self._pause_s = pause_s
        self._halted = halted
        self._lock = threading.Lock()
        self._job: _Job | None = None
        self._closed = False

    def serialize(self, tmp: str, raft_data: Any) -> None:
        """Pin the stores and start writing their snapshot; returns at once."""
        Path(tmp).unlink(missing_ok=True)  # what is left here PySyncObj renames onto its file
        last, prev, cluster = raft_data
        header = {"last": list(last), "prev": list(prev), "cluster": sorted(str(n.id) for n in cluster)}
        with self._lock:
            if self._closed or self._job is not None:  # stopping (PySyncObj waits for a job)
                return
            job = _Job(index=int(last[1]))
            if (why := self._halted()) is not None:
                # A master halted at an entry written by a newer kiok did not apply it nor any
                # after it: a snapshot at ``last`` would let PySyncObj drop them from its
                # journal, and the upgraded master would skip them for good. The job ends
                # FAILED at once (PySyncObj waits for an end before it tries again).
                job.error = RuntimeError(f"this master stopped applying the log ({why})")
                self._job = job
                return
            pinned = self._pin()
            job.thread = threading.Thread(target=self._run, args=(job, pinned, header), name="raft-snapshot")
            self._job = job
            job.thread.start()

    def _run(self, job: _Job, pinned: snapshot.Pinned, header: dict[str, Any]) -> None:
        started = time.monotonic()
        try:
            if self._pause_s > 0:
                log.warning(
                    "snapshot at raft index %d: writing paused %.1f s (kiok.raft.snapshot.write.pause.ms)",
                    job.index,
                    self._pause_s,
                )
                if job.cancel.wait(self._pause_s):
                    raise snapshot.WriteCancelled("cancelled while paused")
            job.publish = self._write(pinned, header, job.cancel.is_set)
        except BaseException as e:  # reported by check(), on the Raft thread
            job.error = e
        finally:
            pinned.release()
            job.seconds = time.monotonic() - started

    def check(self) -> int:
        """SERIALIZING while a write is under way; once it is over, SUCCESS when its file is
        now PySyncObj's snapshot, else FAILED (logged; the previous snapshot is kept)."""
        job = self._job
        if job is None:
            return IDLE
        if job.thread is not None and job.thread.is_alive():
            return WRITING
        with self._lock:
            self._job = None
        if job.cancel.is_set():
            log.info("snapshot at raft index %d abandoned (an install or a stop came first)", job.index)
            return FAILED
        try:
            if job.publish is None:
                raise job.error or RuntimeError("the writer ended without a file")
            job.publish(self._path)
        except Exception as e:
            log.error("snapshot at raft index %d not written (%s); the previous one is kept", job.index, e)
            return FAILED
        log.info("snapshot at raft index %d written in %.1f s", job.index, job.seconds)
        return SUCCESS

    def abandon(self) -> None:
        """Cancel the write under way, if any, and wait for its thread; ``check`` then reports
        it FAILED. Before an install replaces the stores' content and PySyncObj's file."""
        job = self._job
        if job is not None and job.thread is not None:
            job.cancel.set()
            job.thread.join()

    def close(self) -> None:
        """Stopping: abandon the write under way and start no other."""
        with self._lock:
            self._closed = True
        self.abandon()
