"""Pruning old backups (``kiok.backup.keep``): which backups may go, and deleting them.

Backups are incremental at the file level: a manifest entry may name an object another,
older backup uploaded (``FileEntry.backup``). So "keep the newest N" keeps N backups *with
everything they restore from*: each of the newest N, and every backup one of the kept ones
points to, transitively (a backup that stays is whole, so every listed backup restores).
Only backups of one keyring lineage (``ringId``: one cluster's history) are weighed against
each other: a fresh master's first backup in a shared target never prunes the backups it
is about to be restored from. The rest are deleted, manifest first: a backup half deleted
by a crash has no manifest, is no longer listed, and its leftover objects stay.
"""

from __future__ import annotations

from collections.abc import Sequence

from kiok.store.backup import MANIFEST, Manifest, lineage
from kiok.store.objects import DirObjectStore, ObjectStore


def prune_plan(manifests: Sequence[Manifest], keep: int) -> list[str]:
    """Ids of the backups to delete, oldest first; ``keep`` <= 0 keeps everything. Pure."""
    if keep <= 0:
        return []
    by_id = {m.id: m for m in manifests}
    newest = sorted(manifests, key=lambda m: (m.created_ms, m.id), reverse=True)
    kept: set[str] = set()
    todo = [m.id for m in newest[:keep]]
    while todo:
        backup_id = todo.pop()
        if backup_id in kept:
            continue
        kept.add(backup_id)
        manifest = by_id.get(backup_id)
        if manifest is not None:
            todo.extend(f.backup for f in manifest.files if f.backup not in kept)
    return [m.id for m in reversed(newest) if m.id not in kept]


def delete_backup(target: ObjectStore, backup_id: str) -> None:
    """The manifest first (from then on the backup is not listed), then its objects (and, in
    a directory target, the directories they leave empty). Idempotent: deleting a missing
    object is not an error in either target."""
    target.delete(f"{backup_id}/{MANIFEST}")
    for key in target.list(f"{backup_id}/"):
        target.delete(key)
    if isinstance(target, DirObjectStore):  # the directories its files were in, if now empty
        target.remove_empty_dirs(backup_id)


def prune(target: ObjectStore, keep: int, ring: str, root_key: bytes) -> list[str]:
    """Delete the backups of lineage ``ring`` that ``keep`` lets go; returns their ids. Only
    manifests whose MAC holds under ``root_key`` count: a planted "newer" one must not make
    the real backups look old enough to delete (it is never deleted here either)."""
    doomed = prune_plan(lineage(target, ring, root_key), keep)
    for backup_id in doomed:
        delete_backup(target, backup_id)
    return doomed
