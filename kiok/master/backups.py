"""Backups on a running master: take one now (then prune to ``kiok.backup.keep`` and sweep
orphaned objects), list them, the leader's backup schedule, restoring one in place and
recording the last restore. The bytes work (checkpoints, encryption, hashes) is
``kiok.store.backup``, the crash-safe swap ``kiok.store.restore``;
this module picks the target, keeps one backup or restore at a time, and quiesces the master
around a restore.

Every restore first fetches and verifies the whole backup into a scratch directory (nothing
live is touched if any object fails its hash), then swaps the stores under a redo marker.

- Single master: the leader's loops stop and the workers are dropped, the stores' content
  is replaced on the event loop (no request interleaves), the keyring is reloaded and fresh
  loops start over the restored state: runs that were running at backup time are picked up
  by the failover rules.
- Several masters: the leader verifies the backup, then commits a ``RestoreBackup`` entry
  (backup id + sha256 of its manifest). Each master, when it applies that entry, fetches the
  backup from the shared target itself (the leader reuses its verified copy), checks the
  manifest hash and every object, and swaps its stores before the entry's commands are
  applied (the Raft apply thread waits while the event loop swaps: no request reads a
  half-replaced store): entries after it apply on the restored state everywhere alike. A
  master that cannot read the backup applies nothing more (it retries, and its readiness
  says why) rather than diverge. After the entry every master compacts its Raft log, so a
  master that was away catches up from a snapshot of the restored state instead of needing
  the backup. The leader then takes over afresh (new loops, workers reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiok.core.cron import next_fire_ms, validate_cron
from kiok.errors import Conflict, InvalidInput, KiokError, NotFound
from kiok.store import backup as b
from kiok.store import commands as c
from kiok.store import keys as k
from kiok.store.apply_backup import restore_well_formed
from kiok.store.backup_orphans import sweep_orphans
from kiok.store.backup_prune import prune
from kiok.store.objects import DirObjectStore, ObjectStore, ObjectStoreUnavailable, s3_store_from_settings
from kiok.store.restore import MARKER, Finished, restored_here, swap_in
from kiok.store.txn import decode

if TYPE_CHECKING:
    from kiok.master.node import MasterNode

log = logging.getLogger(__name__)

#: How often the backup scheduler looks at the (replicated) schedule.
_SCHEDULE_POLL_S = 1.0
#: The S3 target's settings, read by ``s3_store_from_settings`` (spelled out here: a test
#: checks every setting is read somewhere).
BACKUP_S3_SECTION = "kiok.backup.s3"
BACKUP_S3_SETTINGS = (
    "kiok.backup.s3.endpoint",
    "kiok.backup.s3.region",
    "kiok.backup.s3.bucket",
    "kiok.backup.s3.prefix",
    "kiok.backup.s3.path.style",
    "kiok.backup.s3.access.key",
    "kiok.backup.s3.secret.key",
    "kiok.backup.s3.connection",
)


class NoBackupTarget(Conflict):
    code = "backup_target_missing"


class RestoreAbandoned(KiokError):
    """The master stops while it waits to read a replicated restore's backup: the entry stays
    unapplied (the journal replays it at the next start)."""

    code = "restore_abandoned"


#: Key derivations (PBKDF2) a listing may spend on keyring salts whose root key the master
#: does not hold already (``MasterNode.root_key_for`` keeps the last ones).
_LIST_NEW_SALTS = 4

#: Between attempts to read a replicated restore's backup: doubling up to the second.
_RESTORE_RETRY_S = (1.0, 10.0)


def backup_due(cron: str | None, armed_ms: int, now_ms: int) -> bool:
    """Whether a scheduled backup is due: the schedule's first fire time after it was armed
    (leadership start or schedule change) has passed. Fire times before arming never count,
    so a new leader does not back-fire what its predecessor may or may not have taken."""
    return bool(cron) and next_fire_ms(str(cron), "UTC", armed_ms) <= now_ms


@dataclass
class _Armed:
    cron: str | None
    at_ms: int


class BackupService:
    def __init__(self, node: MasterNode, clock_ms: Callable[[], int]) -> None:
        self._node = node
        self._clock = clock_ms
        self._lock = asyncio.Lock()
        self.last_error: str | None = None
        #: Why this master cannot apply a replicated restore (None: nothing wrong); set on the
        #: Raft apply thread, read by readiness.
        self.restore_problem: str | None = None

    # --- the target ------------------------------------------------------------------------

    def target(self) -> ObjectStore:
        """``kiok.backup.dir`` if set, else the S3 target; NoBackupTarget when neither is."""
        settings = self._node.settings
        directory = settings.get_str("kiok.backup.dir")
        if directory:
            try:
                return DirObjectStore(Path(directory))
            except ObjectStoreUnavailable as e:
                raise ObjectStoreUnavailable(f"kiok.backup.dir: {e.message}") from None
        store = s3_store_from_settings(settings, BACKUP_S3_SECTION, self._node.reader.connection)
        if store is None:
            raise NoBackupTarget(
                "no backup target: set kiok.backup.dir, or kiok.backup.s3.bucket (or kiok.joblog.s3.bucket, "
                "or kiok.backup.s3.connection)"
            )
        return store

    def _scratch(self, what: str, backup_id: str) -> Path:
        """``<data>/<what>/<id>``, a directory removed whole when the work is done: only for
        a well-formed id (``..`` would name the data directory itself)."""
        if not b.valid_backup_id(backup_id):
            raise NotFound(f"backup {backup_id!r} not found")
        return self._node.settings.data_dir / what / backup_id

    # --- backing up --------------------------------------------------------------------------

    async def backup_now(self) -> tuple[b.Manifest, list[str]]:
        """A backup of every store under a new id (incremental over the newest one), then the
        target pruned to ``kiok.backup.keep`` and rid of orphaned objects; returns the backup
        and the ids pruned."""
        node = self._node
        keys = node.keyring_blob()
        target = self.target()
        keep = node.settings.get_int("kiok.backup.keep")
        async with self._lock:
            now = self._clock()
            backup_id = b.new_backup_id(now)
            scratch = self._scratch("backup-work", backup_id)

            def work() -> b.Manifest:
                try:
                    with scratch_failures(scratch, "copy the stores for the backup"):
                        checkpoints = b.checkpoint(node.backup_sources(), scratch)
                    return b.upload(
                        target, checkpoints, keys, backup_id=backup_id, now_ms=now, master=node.node_id
                    )
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)

            manifest = await asyncio.to_thread(work)
            pruned = await asyncio.to_thread(
                self._tidy, target, keep, manifest.ring_id, keys.root_key, self._clock()
            )
        log.info(
            "backup %s taken: %d files, %d bytes, %d uploaded (base %s)",
            manifest.id,
            len(manifest.files),
            manifest.size,
            manifest.uploaded_bytes,
            f"{manifest.base}, since pruned" if manifest.base in pruned else manifest.base,
        )
        return manifest, pruned

    @staticmethod
    def _tidy(target: ObjectStore, keep: int, ring: str, root_key: bytes, now_ms: int) -> list[str]:
        """Delete what ``kiok.backup.keep`` lets go in the lineage just backed up, then the
        target's orphaned objects (``kiok.store.backup_orphans``); returns the backups pruned.
        A failure leaves the rest for the next backup: the backup just taken is stored anyway."""
        pruned: list[str] = []
        try:
            pruned = prune(target, keep, ring, root_key) if keep > 0 else []
            orphans = sweep_orphans(target, now_ms)
        except KiokError as e:
            log.warning("tidying the backup target failed: %s", e.message)
            return pruned
        for backup_id in pruned:
            log.info("backup %s pruned (kiok.backup.keep = %d)", backup_id, keep)
        if orphans:
            log.info(
                "%d orphaned backup objects deleted (of %s)",
                len(orphans),
                ", ".join(sorted({key.partition("/")[0] for key in orphans})),
            )
        return pruned

    async def list(self) -> b.Listing:
        """The target's backups this master can authenticate (what a restore accepts), and the
        manifests it cannot, by id. Bounded: this store's salt and those already derived cost
        nothing, at most ``_LIST_NEW_SALTS`` other salts get a key derivation per listing."""
        target = self.target()
        own = self._node.keyring_blob().salt
        derived = 0

        def unlock(salt: bytes) -> bytes | None:
            nonlocal derived
            if salt != own and not self._node.has_root_key(salt):
                if derived >= _LIST_NEW_SALTS:
                    return None
                derived += 1
            return self._node.root_key_for(salt)

        return await asyncio.to_thread(b.list_checked, target, unlock)

    # --- the schedule ------------------------------------------------------------------------

    def cron(self) -> str | None:
        raw = self._node.kv.get(k.META, k.BACKUP_CRON.encode())
        record = decode(raw) if raw is not None else None
        return record.get("cron") if isinstance(record, dict) else None

    async def run_schedule(self) -> None:
        """The leader's loop: take a backup when the schedule says so, armed from now."""
        armed = _Armed(self.cron(), self._clock())
        while True:
            await asyncio.sleep(_SCHEDULE_POLL_S)
            cron, now = self.cron(), self._clock()
            if cron != armed.cron:
                armed = _Armed(cron, now)
                continue
            if not backup_due(cron, armed.at_ms, now):
                continue
            armed = _Armed(cron, now)  # firings missed while one ran are skipped, not queued
            try:
                await self.backup_now()
                self.last_error = None
            except Exception as e:  # the schedule goes on; the next firing tries again
                self.last_error = str(e)
                log.warning("scheduled backup failed: %s", e)

    # --- restoring ---------------------------------------------------------------------------

    def _prepare(
        self, target: ObjectStore, backup_id: str, digest: str | None
    ) -> tuple[b.Manifest, dict[str, Path]]:
        """The backup fetched, verified and decrypted into ``restore-work/<id>`` (blocking). A
        copy this master already verified for the same manifest (the leader's, made before it
        proposed the restore) is reused. ``digest``: the manifest's sha256 the restore was
        asked for (BackupCorrupt when the target now holds other bytes under that id)."""
        scratch = self._scratch("restore-work", backup_id)
        manifest, ring = b.open_manifest(target, backup_id, self._node.root_key_for)
        if digest is not None and manifest.digest != digest:
            raise b.BackupCorrupt(
                f"backup {backup_id}: its manifest is not the one the restore was asked for "
                f"(sha256 {manifest.digest[:16]}..., expected {digest[:16]}...)"
            )
        stamp = scratch / "verified"
        if stamp.exists() and stamp.read_text() == manifest.digest:
            return manifest, {store: scratch / store for store in manifest.stores}
        with scratch_failures(scratch, "unpack the backup"):
            checkpoints = b.fetch_verified(target, manifest, ring, scratch)
            b.check_openable(checkpoints, self._node.backup_sources())
            with stamp.open("w") as f:
                f.write(manifest.digest)
                f.flush()
                os.fsync(f.fileno())
        return manifest, checkpoints

    async def restore(self, backup_id: str, by: str) -> b.Manifest:
        """Replace every store with the backup's content; see the module docstring."""
        node = self._node
        scratch = self._scratch("restore-work", backup_id)  # NotFound for an ill-formed id
        target = self.target()
        async with self._lock:
            try:
                manifest, checkpoints = await asyncio.to_thread(self._prepare, target, backup_id, None)
                if node.raft is not None:
                    await node.log.propose(
                        c.RestoreBackup(
                            at_ms=self._clock(),
                            backup_id=backup_id,
                            manifest_sha256=manifest.digest,
                            by=by,
                            signing_key=secrets.token_bytes(32),
                            mark_logs=True,
                        )
                    )
                    return manifest
                sources = node.backup_sources()
                marker = node.settings.data_dir / MARKER

                def replace() -> None:
                    swap_in(
                        sources,
                        checkpoints,
                        marker,
                        backup_id=backup_id,
                        index=None,
                        between=self._pause(),
                        manifest_sha256=manifest.digest,
                        by=by,
                    )

                await node.restart_coordination(replace)
                await self.record(Finished(backup_id, manifest.digest, by))
                await node.seal_signing_key()  # a backup taken before the key was sealed
            finally:
                if node.raft is None and (node.settings.data_dir / MARKER).exists():
                    # The swap failed part way: its redo marker needs the verified copy, from
                    # which the next start finishes the restore (``finish_interrupted``).
                    log.error("restore %s failed mid-swap: restart the master to finish it", backup_id)
                else:
                    shutil.rmtree(scratch, ignore_errors=True)
        return manifest

    async def record(self, restore: Finished) -> None:
        """(Single master) Record a restore this master finished, on top of the restored
        state, as ``apply()`` does on every master of a cluster: after the swap, or at start
        after a crash mid-swap (``finish_interrupted``; a marker too old to name the manifest's
        hash cannot be recorded, and is logged)."""
        cmd = c.RestoreBackup(
            at_ms=self._clock(),
            backup_id=restore.backup_id,
            manifest_sha256=restore.manifest_sha256,
            by=restore.by,
            signing_key=secrets.token_bytes(32),  # sessions from before the restore end
            mark_logs=True,
        )
        if not restore_well_formed(cmd):
            log.warning(
                "restore %s finished but not recorded (its redo marker lacks the details)", cmd.backup_id
            )
            return
        await self._node.log.propose(cmd)

    def _pause(self) -> Callable[[str], None] | None:
        """``kiok.backup.restore.pause.ms`` (a testing aid): a pause after each store is
        replaced, so a test can kill the master mid-swap. None: no pause."""
        pause_s = self._node.settings.get_int("kiok.backup.restore.pause.ms") / 1000
        if pause_s <= 0:
            return None

        def pause(store: str) -> None:
            log.warning(
                "restore paused %.1f s after replacing store %s (kiok.backup.restore.pause.ms)",
                pause_s,
                store,
            )
            time.sleep(pause_s)

        return pause

    def last_restore(self) -> dict[str, Any] | None:
        """The last restore (``meta`` ``cluster/last-restore``), as ``apply()`` recorded it on
        top of the restored state; None when this state was never restored into."""
        raw = self._node.kv.get(k.META, k.LAST_RESTORE.encode())
        record = decode(raw) if raw is not None else None
        return record if isinstance(record, dict) else None

    def restored_at_ms(self) -> int | None:
        """When the last restore into this state was recorded (None: never restored into)."""
        record = self.last_restore()
        at = record.get("atMs") if record is not None else None
        return at if isinstance(at, int) else None

    def apply_replicated(self, cmd: c.RestoreBackup, index: int, stopping: threading.Event) -> None:
        """(Several masters, on the Raft apply thread, before entry ``index``'s commands are
        applied.) Swap this master's stores for the backup ``cmd`` names; returns once done.
        Until the backup can be read and verified it retries, applying nothing else and
        refusing readiness (``restore_problem``); RestoreAbandoned when the master stops."""
        if not restore_well_formed(cmd):
            return  # apply() refuses the entry alike on every master
        node = self._node
        marker = node.settings.data_dir / MARKER
        if restored_here(marker, cmd.backup_id, index):
            return  # swapped before a crash; the journal replays the entry
        delay = _RESTORE_RETRY_S[0]
        while True:
            try:
                _, checkpoints = self._prepare(self.target(), cmd.backup_id, cmd.manifest_sha256)
                break
            except Exception as e:  # any failure to read the backup: hold, never diverge
                why = e.message if isinstance(e, KiokError) else f"{type(e).__name__}: {e}"
                self.restore_problem = (
                    f"cannot apply the restore of backup {cmd.backup_id} (raft entry {index}): {why}; "
                    "this master applies nothing more until it can read the backup (retrying)"
                )
                log.error("%s", self.restore_problem)
                if stopping.wait(delay):
                    raise RestoreAbandoned("stopping while waiting for the backup to restore") from None
                delay = min(delay * 2, _RESTORE_RETRY_S[1])

        def swap() -> None:  # on the event loop: no request reads a half-replaced store
            swap_in(
                node.backup_sources(),
                checkpoints,
                marker,
                backup_id=cmd.backup_id,
                index=index,
                between=self._pause(),
            )
            node.stores_replaced()

        assert node.raft is not None
        node.raft.run_on_loop(swap)
        shutil.rmtree(self._scratch("restore-work", cmd.backup_id), ignore_errors=True)
        self.restore_problem = None
        log.warning("backup %s restored at raft entry %d", cmd.backup_id, index)


@contextlib.contextmanager
def scratch_failures(scratch: Path, doing: str) -> Iterator[None]:
    """What the file system or RocksDB refuses in the master's work directory (a full or
    read-only disk: ``OSError``, or RocksDB's ``IO error``) as ``ScratchUnavailable`` naming
    it: a 503 saying why, not an internal error with a traceback. kiok's own refusals (a
    corrupt backup) pass as they are."""
    try:
        yield
    except KiokError:
        raise
    except Exception as e:
        why = (e.strerror or str(e)) if isinstance(e, OSError) else str(e)
        raise b.ScratchUnavailable(f"{scratch.parent}: cannot {doing}: {why}") from None


def check_cron(value: str | None) -> str:
    """The schedule as stored ('' clears it); InvalidInput naming what is wrong."""
    if value is None or not value.strip():
        return ""
    try:
        validate_cron(value.strip())
    except ValueError as e:
        raise InvalidInput(f"cron: {e}") from None
    return value.strip()
