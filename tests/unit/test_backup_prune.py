"""Pruning backups to ``kiok.backup.keep``: the newest N stay with every backup they point to
(transitively), the rest go, manifest first; over synthetic manifests and real backups."""

from __future__ import annotations

import os
from pathlib import Path

from kiok.security.kms import Keyring
from kiok.store import backup as b
from kiok.store.backup_prune import delete_backup, prune, prune_plan
from kiok.store.kv import RocksKV
from kiok.store.objects import DirObjectStore

SPACES = ("a", "kms")
ROOT = os.urandom(32)


def _manifest(backup_id: str, at: int, holders: list[str]) -> b.Manifest:
    files = tuple(
        b.FileEntry("state", f"{i}.sst", 1, "0" * 64, 1, "0" * 64, holder, f"{holder}/state/{i}.sst")
        for i, holder in enumerate(holders)
    )
    return b.Manifest(backup_id, at, None, ("state",), files, "ring", b"s", b"w")


def test_the_newest_are_kept_with_what_they_point_to_transitively() -> None:
    ms = [
        _manifest("b1", 1, ["b1"]),
        _manifest("b2", 2, ["b2"]),
        _manifest("b3", 3, ["b1", "b3"]),  # points to b1
        _manifest("b4", 4, ["b4"]),
        _manifest("b5", 5, ["b3", "b5"]),  # points to b3, which points to b1
        _manifest("b6", 6, ["b6"]),
    ]
    assert prune_plan(ms, 0) == []
    assert prune_plan(ms, 2) == ["b2", "b4"]
    assert prune_plan(ms, 1) == ["b1", "b2", "b3", "b4", "b5"]
    assert prune_plan(ms, 6) == prune_plan(ms, 60) == []
    assert prune_plan(list(reversed(ms)), 2) == ["b2", "b4"]  # the order listed does not matter


def _take(tmp: Path, kv: RocksKV, target: DirObjectStore, ring: Keyring, now_ms: int) -> b.Manifest:
    cps = b.checkpoint([b.StoreSource("state", kv, SPACES)], tmp / f"work-{now_ms}")
    keys = b.KeyringBlob(ring=ring, salt=b"salt", wrapped=ring.wrap(ROOT), root_key=ROOT)
    return b.upload(target, cps, keys, backup_id=b.new_backup_id(now_ms), now_ms=now_ms)


def test_real_backups_pruned_keep_restoring(tmp_path: Path) -> None:
    kv = RocksKV(tmp_path / "live", SPACES)
    target = DirObjectStore(tmp_path / "target")
    old_ring, new_ring = Keyring.generate(), Keyring.generate()
    taken = []
    for i, ring in enumerate([old_ring, old_ring, new_ring, new_ring]):
        kv.write([("a", f"k{i}-{j:04d}".encode(), b"v" * 100) for j in range(500)], sync=True)
        taken.append(_take(tmp_path, kv, target, ring, 1_700_000_000_000 + i * 1000))
    # The fourth is incremental over the third (a new keyring lineage starts a new chain).
    assert taken[3].base == taken[2].id and any(f.backup == taken[2].id for f in taken[3].files)
    # Pruning weighs one lineage at a time, and the newest one pins the one it points to.
    assert prune(target, 1, taken[3].ring_id, ROOT) == [] and prune(target, 1, taken[1].ring_id, ROOT) == []
    assert len(b.newest_first(b.manifests(target))) == 4
    doomed = prune_plan(b.newest_first(b.manifests(target)), 1)
    assert doomed == [taken[0].id, taken[1].id]
    for backup_id in doomed:
        delete_backup(target, backup_id)
    assert [m.id for m in b.newest_first(b.manifests(target))] == [taken[3].id, taken[2].id]
    assert not [p for p in (tmp_path / "target").rglob("*") if p.is_file() and p.parts[-3] in doomed]
    _, ring = b.open_manifest(target, taken[3].id, lambda salt: ROOT)
    cps = b.fetch_verified(target, taken[3], ring, tmp_path / "restore")
    fresh = RocksKV(tmp_path / "fresh", SPACES)
    b.replace_contents(b.StoreSource("state", fresh, SPACES), cps["state"])
    assert fresh.get("a", b"k0-0000") == b"v" * 100 and fresh.get("a", b"k3-0499") == b"v" * 100


def test_a_prune_leaves_no_empty_directory_in_a_directory_target(tmp_path: Path) -> None:
    """Deleting a backup's objects removes the directories they leave empty, and nothing
    else: a directory with a file that is no object, a symlink and what it points to stay."""
    kv = RocksKV(tmp_path / "live", SPACES)
    root = tmp_path / "target"
    target = DirObjectStore(root)
    ring = Keyring.generate()
    kv.write([("a", b"k", b"v" * 100)], sync=True)
    first = _take(tmp_path, kv, target, ring, 1_700_000_000_000)
    kv.write([("a", b"k2", b"w" * 100)], sync=True)
    second = _take(tmp_path, kv, target, ring, 1_700_000_001_000)
    assert (root / first.id / "state").is_dir()
    # Not an object (a put's temporary file, which ``list`` skips): it and its directory stay.
    stray = root / first.id / "joblog" / ".000009.sst.x.kiok-tmp"
    stray.parent.mkdir()
    stray.write_text("mine")
    outside = tmp_path / "outside" / "empty"
    outside.mkdir(parents=True)
    (root / first.id / "elsewhere").symlink_to(outside.parent)
    delete_backup(target, first.id)
    assert not (root / first.id / "state").exists()  # emptied by the prune: gone
    assert stray.read_text() == "mine"  # its directory stays (and so does the backup's)
    assert (root / first.id).is_dir() and (root / first.id / "elsewhere").is_symlink()
    assert outside.is_dir()  # a symlink is never followed
    delete_backup(target, second.id)
    assert not (root / second.id).exists()  # the whole backup's tree, once empty
    kv.close()
