"""The leader's job-log archiver: copies each task's log to S3, then drops the local copy.

Every ``kiok.joblog.flush.interval.ms`` (and at once when a task or run ends) the leader
takes each log that got bytes since it last looked, uploads the range ``[archived end,
size)`` as one encrypted object (``kiok.store.joblog_archive``) and then proposes
``ArchiveLogs``; only once that commits does any master delete its local chunks of the
range. So:

- S3 unreachable: the upload fails, nothing is proposed, the bytes stay local and the log
  stays on the to-do list; the next pass tries again. The failure is logged once (WARNING)
  and its end once (INFO); ``kiok_joblog_archive_errors_total`` counts each failed upload and
  ``kiok_joblog_archive_lag_bytes`` tells how many bytes wait.
- Leader failover mid-flush: an uploaded object whose command never committed is never read
  (reads follow committed segments) and the new leader uploads the same range again under
  the key that range determines; a deposed leader's late command does not start where the
  archive ends and is ignored when applied. No byte is lost or served twice.
- Retention: a run whose logs are deleted leaves a tombstone (``JobLogStore.delete_runs``);
  the leader deletes the run's objects (its whole prefix, late uploads included) and
  proposes ``ForgetArchivedRuns``. It does so first in each pass, and archives nothing of a
  run while its tombstone waits (nor does ``ArchiveLogs`` take it): after a purge a re-run's
  log starts at offset 0 again, so its objects would have the old ones' keys and prefix,
  and must only be uploaded once the old ones are gone. A tombstone that outlives a leader
  is taken up by the next one, before it archives that run.
- Orphans after a restore: logs archived after the restored backup was taken belong to runs
  the restored state does not have, and nothing refers to them. While the state records a
  restore, the leader lists the archive once every ``kiok.joblog.s3.orphan.grace.ms`` and
  deletes the objects of each run the state does not have whose newest object is older than
  that grace (``orphan_plan``) and whose first frame decrypts with this cluster's keys
  (objects this cluster did not write are never deleted). A run the state has is never
  touched, so an archival in flight (its run exists) is never raced. Once a pass made after
  the restore's time plus the grace leaves no unknown run behind for being recent, the
  sweep is done for that restore (a new leader checks once more).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from kiok.errors import KiokError, NotFound
from kiok.security.kms import Cipher
from kiok.store import commands as c
from kiok.store.commandlog import CommandLog
from kiok.store.joblog import JobLogStore
from kiok.store.joblog_archive import (
    ArchiveCorrupt,
    Segment,
    encrypt_frames,
    orphan_plan,
    parse_segment_key,
    read_range,
    run_prefix,
)
from kiok.store.objects import ObjectMissing, ObjectStore, ObjectStoreUnavailable
from kiok.waits import wait_set

log = logging.getLogger(__name__)

#: Segments proposed per ``ArchiveLogs`` command.
_BATCH = 64
#: Corrupt archived objects remembered as logged (beyond: each read logs its line again).
_CORRUPT_LOGGED = 1000


@dataclass(frozen=True)
class OrphanSweep:
    """How the leader finds runs orphaned by a restore (see the module docstring)."""

    #: Whether the state has the run.
    known_run: Callable[[str], bool]
    #: When the state was last restored into (ms), None: never.
    restored_at: Callable[[], int | None]
    grace_ms: int


@dataclass
class _Swept:
    """What one orphan pass did."""

    young: int
    objects: int = 0
    foreign: int = 0
    runs: list[str] = field(default_factory=list)


@dataclass
class ArchiveStats:
    """What ``/metrics`` shows of archival (kept across leadership terms)."""

    archived_bytes: int = 0
    errors: int = 0
    lag_bytes: int = 0
    failing: bool = False


class LogArchiver:
    def __init__(
        self,
        log_: CommandLog,
        joblog: JobLogStore,
        store: ObjectStore,
        cipher: Callable[[], Cipher],
        clock_ms: Callable[[], int],
        *,
        interval_s: float,
        stats: ArchiveStats,
        orphans: OrphanSweep | None = None,
    ) -> None:
        self._log = log_
        self._joblog = joblog
        self._store = store
        self._cipher = cipher
        self._clock_ms = clock_ms
        self._interval_s = max(0.05, interval_s)
        self.stats = stats
        self._todo: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._orphans = orphans
        #: When the last orphan pass started, and the restore (its time) fully swept.
        self._orphans_at: int | None = None
        self._orphans_done: int | None = None
        self._running = False
        #: Uploaded by the pass under way, not yet proposed (still only in the local store).
        self._uploaded: list[Segment] = []

    def kick(self) -> None:
        """Flush now (a task or run ended: its log is final)."""
        self._wake.set()

    async def run(self) -> None:
        try:
            self._todo |= set(await asyncio.to_thread(self._joblog.watch_unarchived, True))
            self._running = True
            while True:
                await self.flush()
                await wait_set(self._wake, self._interval_s)
                self._wake.clear()
        finally:
            self._running = False
            self._joblog.watch_unarchived(False)

    @property
    def running(self) -> bool:
        return self._running

    def lag_bytes(self) -> int:
        """The bytes waiting now, also while a pass hangs on S3 (for minutes: a request's
        deadline per upload), when the last pass's count would read 0 (found by the
        lifecycle probe of session 29). May run on a scraping thread: ``list`` copies the
        set in one step."""
        waiting = set(list(self._todo)) | self._joblog.dirty_now()
        waiting |= {(s.run_id, s.task_id) for s in list(self._uploaded)}  # not archived until proposed
        return sum(max(0, self._joblog.size(r, t) - self._joblog.archived_end(r, t)) for r, t in waiting)

    async def flush(self) -> int:
        """One pass: delete deleted runs' objects, then upload what waits (but the logs of
        runs whose tombstone still waits) and propose it. Returns the bytes archived."""
        self._todo |= set(self._joblog.take_dirty())
        done: list[Segment] = []
        self._uploaded = done
        archived = 0
        failed = False
        reached = False  # whether S3 answered a call of this pass
        try:
            try:
                reached = await self._delete_tombstoned()
            except ObjectStoreUnavailable as e:  # those runs wait; the others are archived
                self._failed(e)
                failed = True
            for run_id, task_id in sorted(self._todo):
                if self._joblog.has_tombstone(run_id):
                    continue  # archived once the old objects are gone (the module docstring)
                start = self._joblog.archived_end(run_id, task_id)
                end = self._joblog.size(run_id, task_id)
                if end > start:
                    seg = Segment(run_id, task_id, start, end)
                    await asyncio.to_thread(self._upload, seg)
                    reached = True
                    done.append(seg)
                    archived += end - start
                self._todo.discard((run_id, task_id))
                if len(done) >= _BATCH:
                    await self._propose(done)
                    done.clear()
            if done:
                await self._propose(done)
                done.clear()
            reached = await self._sweep_orphans() or reached
            if reached and not failed:
                self._works_again()
        except ObjectStoreUnavailable as e:
            self._failed(e)
        except KiokError as e:  # not leading any more, or a command refused: next pass
            log.info("job-log archival pass stopped: %s", e.message)
        finally:
            for seg in done:  # uploaded but not proposed: archived again next pass
                self._todo.add((seg.run_id, seg.task_id))
            self._uploaded = []
            self.stats.lag_bytes = sum(
                self._joblog.size(r, t) - self._joblog.archived_end(r, t) for r, t in self._todo
            )
        return archived

    def _upload(self, seg: Segment) -> None:
        length = seg.end - seg.start
        chunks = self._joblog.local_chunks(seg.run_id, seg.task_id, seg.start, seg.end)
        self._store.put_stream(seg.key, encrypt_frames(self._cipher(), seg.key, length, chunks))

    async def _propose(self, segments: list[Segment]) -> None:
        cmd = c.ArchiveLogs(
            at_ms=self._clock_ms(),
            segments=[[s.run_id, s.task_id, s.start, s.end] for s in segments],
        )
        await self._log.propose(cmd)
        self.stats.archived_bytes += sum(s.end - s.start for s in segments)

    def _works_again(self) -> None:
        """A whole pass went through (uploads, deletions, the sweep) after a failure, S3
        answering at least one of its calls: said once, also on an idle cluster whose only
        work was deleting. A pass that called S3 for nothing says nothing (after a failed
        orphan sweep, the next pass's, which skips the sweep, had told "works again" while
        S3 was still down)."""
        if self.stats.failing:
            self.stats.failing = False
            log.info("job-log archival to S3 works again; archived logs are caught up")

    async def _delete_tombstoned(self) -> bool:
        """Deletes the objects of deleted runs; whether it called S3."""
        runs = self._joblog.archive_tombstones()
        if not runs:
            return False
        for run_id in runs:
            await asyncio.to_thread(self._delete_run_objects, run_id)
        await self._log.propose(c.ForgetArchivedRuns(at_ms=self._clock_ms(), run_ids=tuple(runs)))
        return True

    def _delete_run_objects(self, run_id: str) -> None:
        for key in self._store.list(run_prefix(run_id)):
            self._store.delete(key)

    async def _sweep_orphans(self) -> bool:
        """At most once per grace while a restore is recorded: delete the objects of runs the
        state does not have (see the module docstring). Whether it called S3."""
        sweep = self._orphans
        if sweep is None:
            return False
        restored = sweep.restored_at()
        now = self._clock_ms()
        if restored is None or restored == self._orphans_done:
            return False
        if self._orphans_at is not None and now - self._orphans_at < sweep.grace_ms:
            return False
        self._orphans_at = now
        swept = await asyncio.to_thread(self._orphan_pass, sweep, now)
        if swept.objects:
            log.info(
                "%d orphaned job-log objects deleted: the archived logs of %d runs the state does "
                "not have (archived after the restored backup was taken)",
                swept.objects,
                len(swept.runs),
            )
        if swept.foreign:
            log.info(
                "the objects of %d runs under the job-log prefix are not this cluster's (they do "
                "not decrypt with its keys): left as they are",
                swept.foreign,
            )
        if swept.young == 0 and now >= restored + sweep.grace_ms:
            self._orphans_done = restored
        return True

    def _orphan_pass(self, sweep: OrphanSweep, now: int) -> _Swept:
        plan = orphan_plan(self._store.list_dated(""), sweep.known_run, now, sweep.grace_ms)
        cipher = self._cipher()
        swept = _Swept(young=plan.young)
        for run_id, keys in plan.runs.items():
            seg = parse_segment_key(keys[0])
            assert seg is not None  # orphan_plan keeps segment keys only
            try:  # one frame: written with this cluster's keys?
                read_range(self._store, cipher, seg, seg.start, seg.start + 1)
            except ArchiveCorrupt:
                swept.foreign += 1
                continue
            except ObjectMissing:
                continue  # deleted since it was listed
            for key in keys:
                self._store.delete(key)
            swept.objects += len(keys)
            swept.runs.append(run_id)
        return swept

    def _failed(self, e: ObjectStoreUnavailable) -> None:
        self.stats.errors += 1
        if not self.stats.failing:
            self.stats.failing = True
            log.warning(
                "job-log archival to S3 failed (%s): logs stay in the local store and are archived "
                "when S3 answers again",
                e.message,
            )


class Archival:
    """Job-log archival as a master sets it up: the object store (resolved on first use,
    since a stored connection can only be read once the store's keyring is loaded), the
    reader every master uses, and the leader's archiver for each leadership term."""

    def __init__(
        self,
        resolve: Callable[[], ObjectStore | None],
        cipher: Callable[[], Cipher],
        *,
        interval_s: float,
        orphans: OrphanSweep | None = None,
    ) -> None:
        self._resolve = resolve
        self._cipher = cipher
        self._interval_s = interval_s
        self._orphans = orphans
        self._store: ObjectStore | None = None
        self._resolved = False
        self.stats = ArchiveStats()
        self.archiver: LogArchiver | None = None
        #: Archived objects found corrupt (logged once each).
        self._corrupt: set[str] = set()
        #: Whether the job-log store still indexes a segment (``JobLogStore.holds_segment``):
        #: an object missing for a segment it no longer holds was deleted by kiok meanwhile.
        self.holds: Callable[[Segment], bool] = lambda seg: True

    def store(self) -> ObjectStore | None:
        if not self._resolved:
            try:
                self._store = self._resolve()
            except KiokError as e:
                log.error("job-log archival is off: %s", e.message)
                self._store = None
            self._resolved = True
        return self._store

    def fetch(self, seg: Segment, start: int, end: int) -> bytes:
        store = self.store()
        if store is None:
            raise ObjectStoreUnavailable(
                f"log {seg.run_id}/{seg.task_id} is archived in S3, but kiok.joblog.s3 is not configured"
            )
        try:
            return read_range(store, self._cipher(), seg, start, end)
        except ObjectMissing:
            if not self.holds(seg):  # the run (or its logs) deleted since the read began
                raise NotFound(f"log {seg.run_id}/{seg.task_id} was deleted") from None
            # Deleted from the bucket behind kiok's back: as lost as altered.
            problem = ArchiveCorrupt(
                f"the archived log {seg.run_id}/{seg.task_id}, bytes {seg.start}-{seg.end}, is "
                f"missing from the object store ({store.where(seg.key)} was deleted: outside kiok, or "
                "by kiok when the run or its logs were deleted after the backup this state was "
                "restored from was taken); it cannot be served"
            )
        except ArchiveCorrupt as e:
            problem = e
        if seg.key not in self._corrupt:  # one line per object, not a traceback per request
            if len(self._corrupt) < _CORRUPT_LOGGED:
                self._corrupt.add(seg.key)
            log.error("%s", problem.message)
        raise problem

    def start_leading(
        self, log_: CommandLog, joblog: JobLogStore, clock_ms: Callable[[], int]
    ) -> list[asyncio.Task[None]]:
        """The archiver of a new leadership term (none when S3 is not configured)."""
        store = self.store()
        if store is None:
            self.archiver = None
            return []
        self.archiver = LogArchiver(
            log_,
            joblog,
            store,
            self._cipher,
            clock_ms,
            interval_s=self._interval_s,
            stats=self.stats,
            orphans=self._orphans,
        )
        return [asyncio.create_task(self.archiver.run(), name="joblog-archiver")]

    def kick(self) -> None:
        if self.archiver is not None:
            self.archiver.kick()

    def lag_bytes(self) -> int:
        """Job-log bytes waiting for S3, counted now on the leader, which archives them; 0
        on the others (a former leader's count, kept, had read as lag for good)."""
        archiver = self.archiver
        return archiver.lag_bytes() if archiver is not None and archiver.running else 0
