"""Orphaned backup objects: what a crashed backup (files uploaded, no manifest written) or a
half-finished prune (manifest deleted first, some objects left) leaves in the target, and
deleting it after each backup.

The rule (``orphan_plan``, pure): objects are grouped by their first key segment, the backup
id. A group is a backup, never touched here, as long as it holds a ``manifest.json`` (even
one that no longer reads: that is for an operator to look at). A group without one is an
orphan once its *newest* object is older than the grace (an hour): a backup in progress,
maybe on another master, uploads its files one after another and so always has a recent
one. Only keys shaped like the ids kiok makes are considered (a target shared with anything
else loses nothing of it), and a key any manifest names is never deleted.

Limit: a single file whose upload takes longer than the grace would let the files uploaded
before it be taken for orphans; its backup's manifest would then name missing objects (its
restore is refused by hash, nothing live is touched).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from kiok.store.backup import MANIFEST, manifests
from kiok.store.objects import DirObjectStore, ObjectStore

#: How old the newest object of a backup without a manifest must be before it is deleted.
ORPHAN_GRACE_MS = 3_600_000
#: A backup id as ``new_backup_id`` makes it.
_BACKUP_ID = re.compile(r"\d{8}T\d{9}Z-[0-9a-f]{6}")


def orphan_plan(
    objects: Iterable[tuple[str, int]], referenced: set[str], now_ms: int, grace_ms: int = ORPHAN_GRACE_MS
) -> list[str]:
    """The keys to delete, sorted, of ``objects`` (key, last-modified ms); ``referenced``: the
    object keys every readable manifest names. Pure."""
    groups: dict[str, list[tuple[str, int]]] = {}
    for key, modified_ms in objects:
        backup_id, _, rest = key.partition("/")
        if rest and _BACKUP_ID.fullmatch(backup_id):
            groups.setdefault(backup_id, []).append((key, modified_ms))
    doomed: list[str] = []
    for members in groups.values():
        if any(key.partition("/")[2] == MANIFEST for key, _ in members):
            continue
        if now_ms - max(modified for _, modified in members) < grace_ms:
            continue
        doomed.extend(key for key, _ in members if key not in referenced)
    return sorted(doomed)


def sweep_orphans(target: ObjectStore, now_ms: int, grace_ms: int = ORPHAN_GRACE_MS) -> list[str]:
    """Delete the target's orphaned objects (``orphan_plan``); returns their keys. Idempotent;
    safe alongside a backup or a prune on another master (see the module docstring)."""
    objects = target.list_dated("")
    listed = {key for key, _ in objects}
    # What exists and is referenced, one manifest at a time (planted ones may name millions).
    referenced = {f.object_key for m in manifests(target) for f in m.files if f.object_key in listed}
    doomed = orphan_plan(objects, referenced, now_ms, grace_ms)
    for key in doomed:
        target.delete(key)
    if isinstance(target, DirObjectStore):  # the directories the orphans were in, if now empty
        for backup_id in sorted({key.partition("/")[0] for key in doomed}):
            target.remove_empty_dirs(backup_id)
    return doomed
