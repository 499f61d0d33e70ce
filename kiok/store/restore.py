"""Swapping a verified backup into the live stores, crash-safe: a redo marker is written
before the first store is touched and removed after the last, so a master killed mid-swap
finishes the restore when it starts again (``finish_interrupted``) instead of running on a
half-replaced store.

The marker (``<data>/restore-redo.json``) names the backup, the Raft index of the entry that
carries the restore (None on a single master), the verified, decrypted checkpoints in the
scratch directory and a phase (``swapping``, then ``swapped``). Redoing is safe because the
swap is idempotent: each store is made to hold exactly the checkpoint's key-values
(``replace_contents``) but its own Raft applied index. The checkpoints are fetched and
verified before the marker exists, so a crash before it leaves the live stores untouched (on
several masters the Raft journal then replays the restore entry, which fetches again).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiok.errors import KiokError
from kiok.store.backup import StoreSource, check_openable, replace_contents

log = logging.getLogger(__name__)

MARKER = "restore-redo.json"


class RestoreInterrupted(KiokError):
    """A restore was interrupted and cannot be finished (its verified copy is gone)."""

    code = "restore_interrupted"


def _write_marker(marker: Path, body: dict[str, object]) -> None:
    tmp = marker.with_suffix(".tmp")
    with tmp.open("w") as f:
        json.dump(body, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, marker)
    _fsync_dir(marker.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_marker(marker: Path) -> dict[str, Any] | None:
    if not marker.exists():
        return None
    body = json.loads(marker.read_text())
    return body if isinstance(body, dict) else None


@dataclass(frozen=True)
class Finished:
    """A restore ``finish_interrupted`` finished: what a single master records of it (as
    the restore would have once done). ``manifest_sha256`` and ``by`` are empty in a marker
    written before they were kept there."""

    backup_id: str
    manifest_sha256: str
    by: str


def swap_in(
    sources: Sequence[StoreSource],
    checkpoints: dict[str, Path],
    marker: Path,
    *,
    backup_id: str,
    index: int | None,
    between: Callable[[str], None] | None = None,
    manifest_sha256: str = "",
    by: str = "",
) -> None:
    """Make every store hold its verified checkpoint (each keeps its ``keep`` keys: its Raft
    applied index, which the caller's entry write moves to ``index``). Idempotent; the
    marker makes it survive a crash. On a single master (``index`` None) the marker goes
    once every store is replaced; with several it stays, marked swapped, until the entry is
    written (``restored_here`` lets the journal's replay of the entry skip the swap, and
    ``finish_interrupted`` removes it). ``between(store)`` is a test hook, called after each
    store is replaced. ``manifest_sha256`` and ``by`` are kept in the marker for the record a
    single master writes after a redo."""
    where = {n: str(p) for n, p in checkpoints.items()}
    body: dict[str, Any] = {
        "backupId": backup_id,
        "index": index,
        "checkpoints": where,
        "phase": "swapping",
        "manifestSha256": manifest_sha256,
        "by": by,
    }
    _write_marker(marker, body)
    for source in sources:
        copied = replace_contents(source, checkpoints[source.name])
        log.warning("restore %s: store %s replaced (%d keys)", backup_id, source.name, copied)
        if between is not None:
            between(source.name)
    if index is None:
        marker.unlink()
        _fsync_dir(marker.parent)
    else:
        _write_marker(marker, {**body, "phase": "swapped"})


def restored_here(marker: Path, backup_id: str, index: int) -> bool:
    """Whether this master already swapped backup ``backup_id`` in for Raft entry ``index``
    (a crash came before the entry was written; the journal replays it)."""
    body = _read_marker(marker)
    return (
        body is not None
        and body.get("phase") == "swapped"
        and body.get("backupId") == backup_id
        and body.get("index") == index
    )


def finish_interrupted(data_dir: Path, sources: Sequence[StoreSource], applied: int) -> Finished | None:
    """At start, before the stores are read: finish a restore a crash interrupted mid-swap.
    Returns the restore it finished (None: there was none to finish). ``applied`` is the
    state store's Raft applied index (0 on a single master). RestoreInterrupted when the
    verified copy is gone: the store is half-replaced and this master must not start on it."""
    marker = data_dir / MARKER
    body = _read_marker(marker)
    if body is None:
        return None
    backup_id, index = str(body["backupId"]), body.get("index")
    if body.get("phase") == "swapped":
        if index is None or applied >= int(index):
            marker.unlink()  # the entry was written: nothing left to do
        return None
    checkpoints = {str(n): Path(p) for n, p in body["checkpoints"].items()}
    try:
        check_openable(checkpoints, sources)
    except KiokError as e:
        raise RestoreInterrupted(
            f"the restore of backup {backup_id} was interrupted and its verified copy cannot be "
            f"read ({e.message}): restore it again on a fresh data directory (with several "
            "masters, empty this master's data directory: it is rebuilt from the others)"
        ) from None
    log.warning("restore %s was interrupted mid-swap: finishing it from its verified copy", backup_id)
    digest, by = str(body.get("manifestSha256") or ""), str(body.get("by") or "")
    swap_in(
        sources,
        checkpoints,
        marker,
        backup_id=backup_id,
        index=None if index is None else int(index),
        manifest_sha256=digest,
        by=by,
    )
    for path in {p.parent for p in checkpoints.values()}:
        shutil.rmtree(path, ignore_errors=True)
    return Finished(backup_id, digest, by)
