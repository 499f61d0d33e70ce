"""Backups on a running master: take one now, list them, the leader's backup schedule, and
restoring one in place. The bytes work (checkpoints, encryption, hashes) is
``kiok.store.backup``; this module picks the target, keeps one backup or restore at a time,
and quiesces the master around a restore.

Restore on a single master: the backup is fetched and verified whole into a scratch
directory first (nothing live is touched if any object fails its hash); then the leader's
loops stop and the workers are dropped, the stores' content is replaced on the event loop
(no request interleaves), the keyring is reloaded from the restored ``kms`` keyspace, and fresh
loops start over the restored state: runs that were running at backup time are picked up by
the failover rules (their driver reattaches within the grace, or they are reassigned).
With several masters a restore is refused for now (see docs/operations.md).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kiok.core.cron import next_fire_ms, validate_cron
from kiok.errors import Conflict, InvalidInput
from kiok.store import backup as b
from kiok.store import keys as k
from kiok.store.objects import DirObjectStore, ObjectStore, s3_store_from_settings
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

    # --- the target ------------------------------------------------------------------------

    def target(self) -> ObjectStore:
        """``kiok.backup.dir`` if set, else the S3 target; NoBackupTarget when neither is."""
        settings = self._node.settings
        directory = settings.get_str("kiok.backup.dir")
        if directory:
            return DirObjectStore(Path(directory))
        store = s3_store_from_settings(settings, BACKUP_S3_SECTION, self._node.reader.connection)
        if store is None:
            raise NoBackupTarget(
                "no backup target: set kiok.backup.dir, or kiok.backup.s3.bucket (or kiok.joblog.s3.bucket, "
                "or kiok.backup.s3.connection)"
            )
        return store

    def _scratch(self, what: str, backup_id: str) -> Path:
        return self._node.settings.data_dir / what / backup_id

    # --- backing up --------------------------------------------------------------------------

    async def backup_now(self) -> b.Manifest:
        """A backup of every store under a new id (incremental over the newest one)."""
        node = self._node
        keys = node.keyring_blob()
        target = self.target()
        async with self._lock:
            now = self._clock()
            backup_id = b.new_backup_id(now)
            scratch = self._scratch("backup-work", backup_id)

            def work() -> b.Manifest:
                try:
                    checkpoints = b.checkpoint(node.backup_sources(), scratch)
                    return b.upload(
                        target, checkpoints, keys, backup_id=backup_id, now_ms=now, master=node.node_id
                    )
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)

            manifest = await asyncio.to_thread(work)
        log.info(
            "backup %s taken: %d files, %d bytes, %d uploaded (base %s)",
            manifest.id,
            len(manifest.files),
            manifest.size,
            manifest.uploaded_bytes,
            manifest.base,
        )
        return manifest

    async def list(self) -> list[b.Manifest]:
        target = self.target()
        return await asyncio.to_thread(b.list_backups, target)

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

    async def restore(self, backup_id: str) -> b.Manifest:
        """Replace every store with the backup's content; see the module docstring."""
        node = self._node
        if node.raft is not None:
            raise Conflict(
                "restoring a backup with several masters is not supported yet: restore into a "
                "single master (kiok.master.peers unset)"
            )
        target = self.target()
        async with self._lock:
            scratch = self._scratch("restore-work", backup_id)
            sources = node.backup_sources()

            def fetch() -> tuple[b.Manifest, dict[str, Path]]:
                manifest, ring = b.open_manifest(target, backup_id, node.root_key_for)
                checkpoints = b.fetch_verified(target, manifest, ring, scratch)
                b.check_openable(checkpoints, sources)
                return manifest, checkpoints

            try:
                manifest, checkpoints = await asyncio.to_thread(fetch)

                def replace() -> None:
                    for source in sources:
                        copied = b.replace_contents(source, checkpoints[source.name])
                        log.warning("restore %s: store %s replaced (%d keys)", backup_id, source.name, copied)

                await node.restart_coordination(replace)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        return manifest


def check_cron(value: str | None) -> str:
    """The schedule as stored ('' clears it); InvalidInput naming what is wrong."""
    if value is None or not value.strip():
        return ""
    try:
        validate_cron(value.strip())
    except ValueError as e:
        raise InvalidInput(f"cron: {e}") from None
    return value.strip()
