"""Job-log archival against a real (moto) S3 server and real RocksDB stores: the leader's
archiver, the replicated command that drops local chunks, and the transparent read."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiok.master.archival import Archival, ArchiveStats, LogArchiver, OrphanSweep
from kiok.security.kms import Cipher, Keyring
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.effects import Effects
from kiok.store.encrypted import EncryptedKV
from kiok.store.joblog import ENCRYPTION_KEYS, LOGS, SPACES, JobLogStore
from kiok.store.joblog_archive import ArchiveCorrupt, Segment, read_range
from kiok.store.kv import MemoryKV, RocksKV
from kiok.store.objects import ObjectStoreUnavailable, S3ObjectStore
from tests.s3_fixture import ACCESS_KEY, SECRET_KEY, MotoS3

TEXT = "line {i}: résumé ✓ secret-marker-{i}\n"


class Rig:
    def __init__(self, tmp: Path, moto: MotoS3) -> None:
        self.ring = Keyring.generate()
        self.raw = RocksKV(tmp / "joblog", SPACES)
        kv = EncryptedKV(self.raw, ENCRYPTION_KEYS)
        kv.set_keyring(self.ring)
        self.joblog = JobLogStore(kv)
        state = EncryptedKV(RocksKV(tmp / "state", keys.SPACES), keys.ENCRYPTION_KEYS)
        state.set_keyring(self.ring)
        self.log = LocalCommandLog(state)
        self.log.subscribe(self._on_effects)
        self.moto = moto
        self.bucket = moto.new_bucket()
        self.store = S3ObjectStore(
            endpoint=moto.endpoint,
            region="us-east-1",
            bucket=self.bucket,
            prefix="joblogs",
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            connect_timeout_s=1,
        )
        self.stats = ArchiveStats()
        self.joblog.attach_archive(lambda seg, a, b: read_range(self.store, self.cipher(), seg, a, b))

    def _on_effects(self, fx: Effects) -> None:
        self.joblog.apply_archive_effects(fx)
        if fx.log_deletes:
            self.joblog.delete_runs(fx.log_deletes)

    def cipher(self) -> Cipher:
        return Cipher(self.ring, "joblog-encryption")

    def archiver(self) -> LogArchiver:
        archiver = LogArchiver(
            self.log, self.joblog, self.store, self.cipher, lambda: 1, interval_s=60, stats=self.stats
        )
        archiver._todo |= set(self.joblog.watch_unarchived(True))
        return archiver

    def local_keys(self) -> list[bytes]:
        return [k for k, _ in self.raw.scan(LOGS, b"") if len(k.split(b"\x00")) == 3]

    def read_all(self, run: str, task: str, step: int) -> bytes:
        out, offset = b"", 0
        while True:
            data, offset = self.joblog.read(run, task, offset, step)
            if not data:
                return out
            out += data


@pytest.fixture
def rig(tmp_path: Path, s3_moto: MotoS3) -> Iterator[Rig]:
    r = Rig(tmp_path, s3_moto)
    yield r
    r.joblog.close()


def _write(rig: Rig, run: str, task: str, lines: range) -> bytes:
    written = b""
    for i in lines:
        data = TEXT.format(i=i).encode() * 50
        rig.joblog.append(run, task, data)
        written += data
    return written


async def test_archived_log_reads_the_same_and_the_bucket_holds_no_text(rig: Rig) -> None:
    archiver = rig.archiver()
    first = _write(rig, "r1", "t1", range(40))  # ~ 140 KiB: three encryption frames
    assert await archiver.flush() == len(first)
    assert rig.local_keys() == []  # the local copy is gone...
    assert rig.joblog.size("r1", "t1") == len(first)  # ...the offsets are not
    log = first + _write(rig, "r1", "t1", range(40, 45))
    _write(rig, "r1", "__run__", range(2))
    assert rig.joblog.archived_end("r1", "t1") == len(first)
    for step in (4093, 1 << 20):  # the same bytes, across the S3/local boundary too
        assert rig.read_all("r1", "t1", step) == log
    data, after = rig.joblog.read("r1", "t1", 65530, 20)  # across two frames (cut on a character)
    assert data == log[65530:after] and after >= 65530 + 17
    await archiver.flush()
    assert rig.local_keys() == []
    for step in (4093, 1 << 20):
        assert rig.read_all("r1", "t1", step) == log
    objects = rig.moto.all_bytes(rig.bucket)
    assert len(objects) == 3 and all(k.startswith("joblogs/r1/") for k in objects)
    blob = b"".join(objects.values())
    assert b"secret-marker" not in blob and "résumé".encode() not in blob
    assert rig.stats.archived_bytes == rig.joblog.size("r1", "t1") + rig.joblog.size("r1", "__run__")
    assert rig.stats.lag_bytes == 0


async def test_s3_down_keeps_logs_local_and_archival_catches_up(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    archiver = rig.archiver()
    rig.moto.stop()
    data = _write(rig, "r2", "t", range(10))
    with caplog.at_level(logging.INFO, logger="kiok.master.archival"):
        for _ in range(3):
            assert await archiver.flush() == 0
        assert rig.stats.errors == 3 and rig.stats.lag_bytes == len(data)
        assert rig.read_all("r2", "t", 4096) == data and rig.local_keys()
        rig.moto.start()
        more = _write(rig, "r2", "t", range(10, 12))
        assert await archiver.flush() == len(data + more)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "S3" in warnings[0].getMessage()  # once, not per attempt
    assert any("works again" in r.getMessage() for r in caplog.records)
    assert rig.local_keys() == [] and rig.stats.lag_bytes == 0
    assert rig.read_all("r2", "t", 4096) == data + more
    rig.moto.stop()  # an archived range cannot be read while S3 is away: an error, not garbage
    with pytest.raises(ObjectStoreUnavailable):
        rig.joblog.read("r2", "t", 0, 100)
    rig.moto.start()


async def test_the_lag_counts_what_waits_while_an_upload_hangs(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lifecycle probe of session 29: with S3 hanging (an upload waits out its request's
    deadline, minutes by default) the lag gauge read what the last pass had left, 0, while the
    logs of three runs waited."""
    archiver = rig.archiver()
    entered, release = threading.Event(), threading.Event()
    real = rig.store.put_stream

    def hanging(key: str, chunks: Iterator[bytes]) -> None:
        if "/t2/" in key:  # the first upload goes through; the second hangs
            entered.set()
            release.wait(30)
        real(key, chunks)

    monkeypatch.setattr(rig.store, "put_stream", hanging)
    first = _write(rig, "r", "t1", range(3)) + _write(rig, "r", "t2", range(3))
    assert archiver.lag_bytes() == len(first)  # before any pass
    flushing = asyncio.create_task(archiver.flush())
    assert await asyncio.to_thread(entered.wait, 30)
    more = _write(rig, "r", "u", range(2))
    # t1's upload is done but not proposed: its bytes are still only here (the re-probe of
    # session 29: they had dropped out of the count).
    assert archiver.lag_bytes() == len(first) + len(more)
    release.set()
    assert await flushing == len(first)
    assert archiver.lag_bytes() == len(more)
    await archiver.flush()
    assert archiver.lag_bytes() == 0 == rig.stats.lag_bytes


async def test_a_pass_that_reaches_no_s3_does_not_say_archival_works_again(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """The lifecycle probe of session 29: after a restore, S3 down, the orphan sweep failed;
    the next pass, with nothing to upload and the sweep waiting out its grace, called S3 for
    nothing and logged that archival works again."""
    sweep = OrphanSweep(known_run=lambda run: True, restored_at=lambda: 0, grace_ms=3_600_000)
    archiver = LogArchiver(
        rig.log, rig.joblog, rig.store, rig.cipher, lambda: 1, interval_s=60, stats=rig.stats, orphans=sweep
    )
    archiver._todo |= set(rig.joblog.watch_unarchived(True))
    rig.moto.stop()
    with caplog.at_level(logging.INFO, logger="kiok.master.archival"):
        await archiver.flush()  # the sweep lists the bucket: S3 is down
        assert rig.stats.failing and rig.stats.errors == 1
        await archiver.flush()  # nothing to upload, the sweep waits: S3 not called
        assert rig.stats.failing
        assert not [r for r in caplog.records if "works again" in r.getMessage()]
        rig.moto.start()
        data = _write(rig, "r", "t", range(2))
        assert await archiver.flush() == len(data)
    assert not rig.stats.failing
    assert len([r for r in caplog.records if "works again" in r.getMessage()]) == 1


async def test_a_flush_cut_short_by_failover_neither_loses_nor_doubles(rig: Rig) -> None:
    old = rig.archiver()
    data = _write(rig, "r3", "t", range(5))
    # The old leader uploads, then dies before its ArchiveLogs commits.
    old._upload(Segment("r3", "t", 0, len(data)))
    data += _write(rig, "r3", "t", range(5, 8))
    new = rig.archiver()
    assert await new.flush() == len(data)
    # The deposed leader's late command (and a journal replay of the new one) change nothing.
    await rig.log.propose(c.ArchiveLogs(at_ms=2, segments=[["r3", "t", 0, 5 * len(TEXT) * 50]]))
    await rig.log.propose(c.ArchiveLogs(at_ms=2, segments=[["r3", "t", 0, len(data)]]))
    assert rig.joblog.archived_end("r3", "t") == len(data)
    assert rig.read_all("r3", "t", 1000) == data
    more = _write(rig, "r3", "t", range(8, 9))
    await new.flush()
    assert rig.read_all("r3", "t", 1000) == data + more


async def test_retention_deletes_the_archived_objects(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    archiver = rig.archiver()
    _write(rig, "gone", "t", range(3))
    _write(rig, "kept", "t", range(3))
    await archiver.flush()
    rig.store.put("gone/t/0000000000001000-0000000000002000", b"?")  # left by an interrupted flush
    rig.moto.stop()
    rig.joblog.delete_runs(["gone"])  # what DeleteRuns / PurgeRunLogs do on every master
    assert rig.joblog.size("gone", "t") == 0
    await archiver.flush()  # S3 away: the tombstone waits
    assert rig.joblog.archive_tombstones() == ["gone"]
    rig.moto.start()
    with caplog.at_level(logging.INFO, logger="kiok.master.archival"):
        await archiver.flush()  # deleting is all it had to do: it says S3 works again all the same
    assert rig.joblog.archive_tombstones() == []
    assert sorted(k.split("/")[1] for k in rig.moto.all_bytes(rig.bucket)) == ["kept"]
    assert [r.getMessage() for r in caplog.records if "works again" in r.getMessage()], caplog.records
    assert not rig.stats.failing


async def test_a_rerun_after_a_purge_archives_its_new_log_and_the_tombstone_spares_it(rig: Rig) -> None:
    archiver = rig.archiver()
    _write(rig, "r", "t", range(10, 13))
    await archiver.flush()
    keys_before = sorted(rig.moto.all_bytes(rig.bucket))
    rig.joblog.delete_runs(["r"])  # PurgeRunLogs: a tombstone for the archived object
    # The run is re-run: its log starts at 0 again, as long as before (the same object key).
    new = _write(rig, "r", "t", range(20, 23))
    await archiver.flush()  # the old object goes first, then the new log is archived
    assert rig.joblog.archive_tombstones() == [] and rig.local_keys() == []
    assert rig.read_all("r", "t", 1 << 20) == new
    assert sorted(rig.moto.all_bytes(rig.bucket)) == keys_before
    # Purged again while S3 is away: the tombstone waits, and so does the next re-run's log.
    rig.moto.stop()
    rig.joblog.delete_runs(["r"])
    newer = _write(rig, "r", "t", range(30, 33))
    await archiver.flush()
    # A deposed leader's late ArchiveLogs of the old bytes (same range) is not taken.
    await rig.log.propose(c.ArchiveLogs(at_ms=2, segments=[["r", "t", 0, len(newer)]]))
    assert rig.joblog.archived_end("r", "t") == 0 and rig.read_all("r", "t", 1 << 20) == newer
    rig.moto.start()
    await rig.archiver().flush()  # the next leader takes the tombstone up before archiving
    assert rig.joblog.archive_tombstones() == [] and rig.local_keys() == []
    assert rig.read_all("r", "t", 1 << 20) == newer
    assert sorted(rig.moto.all_bytes(rig.bucket)) == keys_before


async def test_an_object_uploaded_but_never_committed_goes_with_its_deleted_run(rig: Rig) -> None:
    old = rig.archiver()
    data = _write(rig, "gone", "t", range(3))
    _write(rig, "kept", "t", range(3))
    # The leader uploads the run's only range, and its ArchiveLogs never commits (deposed, or
    # the run deleted while the upload was in flight): no segment refers to the object.
    old._upload(Segment("gone", "t", 0, len(data)))
    rig.joblog.delete_runs(["gone"])  # DeleteRuns / PurgeRunLogs on every master
    assert rig.joblog.archive_tombstones() == ["gone"]
    await rig.archiver().flush()
    assert rig.joblog.archive_tombstones() == []
    assert sorted(k.split("/")[1] for k in rig.moto.all_bytes(rig.bucket)) == ["kept"]


def test_without_archival_deleted_logs_leave_no_tombstone() -> None:
    joblog = JobLogStore(MemoryKV(SPACES))
    joblog.append("r", "t", b"output")
    joblog.delete_runs(["r"])
    assert joblog.size("r", "t") == 0 and joblog.archive_tombstones() == []


def test_a_tampered_object_does_not_decrypt(rig: Rig) -> None:
    seg = Segment("r4", "t", 0, 5)
    rig.joblog.append("r4", "t", b"hello")
    rig.archiver()._upload(seg)
    assert read_range(rig.store, rig.cipher(), seg, 1, 4) == b"ell"
    rig.store.put(seg.key, rig.store.get(seg.key)[:-1] + b"x")
    with pytest.raises(ArchiveCorrupt):
        read_range(rig.store, rig.cipher(), seg, 0, 5)


def test_orphan_plan_takes_unknown_runs_old_enough_and_only_keys_kiok_makes() -> None:
    from kiok.store.joblog_archive import orphan_plan, segment_key

    now, grace = 10_000_000, 3_600_000
    old, recent = now - grace - 1, now - 10
    objects = [
        (segment_key("kept", "t", 0, 5), old),  # a run the state has: never an orphan
        (segment_key("gone", "t", 0, 5), old),
        (segment_key("gone", "__run__", 0, 9), old),
        (segment_key("fresh", "t", 0, 5), old),  # its newest object is recent: later
        (segment_key("fresh", "t", 5, 7), recent),
        ("gone/t/not-a-segment", old),
        ("README", old),
    ]
    plan = orphan_plan(objects, lambda run_id: run_id == "kept", now, grace)
    assert plan.runs == {
        "gone": sorted([segment_key("gone", "t", 0, 5), segment_key("gone", "__run__", 0, 9)])
    }
    assert plan.young == 1


def test_a_missing_object_is_not_found_when_kiok_deleted_its_log_and_corrupt_otherwise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A read racing kiok's own deletion of a run (its segment read, then the run deleted with
    its objects) is told the log is gone (404), with nothing logged; an object deleted from
    the bucket behind kiok's back while its log still names it is a clear 500, logged once."""
    from kiok.errors import NotFound
    from kiok.master.archival import Archival
    from kiok.store.objects import DirObjectStore

    ring = Keyring.generate()
    archival = Archival(
        lambda: DirObjectStore(tmp_path / "bucket"), lambda: Cipher(ring, "joblog-encryption"), interval_s=1
    )
    seg = Segment("r-1-1", "t", 0, 10)
    held = {seg}
    archival.holds = lambda s: s in held
    with caplog.at_level(logging.ERROR, logger="kiok.master.archival"):
        for _ in range(2):
            with pytest.raises(ArchiveCorrupt, match="missing from the object store"):
                archival.fetch(seg, 0, 10)
        held.clear()
        with pytest.raises(NotFound, match="r-1-1/t was deleted"):
            archival.fetch(seg, 0, 10)
    assert len([r for r in caplog.records if "missing from the object store" in r.getMessage()]) == 1


def test_only_the_leader_counts_a_lag() -> None:
    """The re-probe of session 29: a former leader kept its last count, which read as lag for
    good after a failover; the masters that do not archive say 0."""
    archival = Archival(lambda: None, lambda: Cipher(Keyring.generate(), "joblog-encryption"), interval_s=1)
    archival.stats.lag_bytes = 180_955  # what its last pass as leader left
    assert archival.lag_bytes() == 0
