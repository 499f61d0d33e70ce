"""Orphaned backup objects (a crashed backup, a half-finished prune): the pure rule, then the
sweep against both targets, a directory and a real (moto) S3 server."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiok.security.kms import Keyring
from kiok.store import backup as b
from kiok.store.backup_orphans import ORPHAN_GRACE_MS, orphan_plan, sweep_orphans
from kiok.store.kv import RocksKV
from kiok.store.objects import DirObjectStore, ObjectStore
from tests.s3_fixture import MotoS3

SPACES = ("a", "kms")
ROOT = os.urandom(32)
HOUR = ORPHAN_GRACE_MS
A, B, C = "20260101T000000000Z-aaaaaa", "20260102T000000000Z-bbbbbb", "20260103T000000000Z-cccccc"


def test_the_rule() -> None:
    now = 10 * HOUR
    objects = [
        (f"{A}/manifest.json", 0),  # a backup: never touched, however old
        (f"{A}/state/1.sst", 0),
        (f"{B}/state/1.sst", 0),  # no manifest, old: orphans...
        (f"{B}/state/2.sst", 0),  # ...except what a manifest still names
        (f"{B}/joblog/3.sst", now - HOUR),  # exactly the grace old
        (f"{C}/state/1.sst", 0),  # no manifest, but its newest object is recent: in progress
        (f"{C}/state/2.sst", now - HOUR + 1),
        ("notes.txt", 0),  # not kiok's: ignored
        ("my-backup/state/1.sst", 0),
        (B, 0),
    ]
    assert orphan_plan(objects, {f"{B}/state/2.sst"}, now) == [f"{B}/joblog/3.sst", f"{B}/state/1.sst"]
    assert orphan_plan(objects, set(), now, grace_ms=2 * HOUR) == []  # B's newest is too young now
    assert orphan_plan([], set(), now) == []


@pytest.fixture(params=["dir", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "dir":
        yield DirObjectStore(tmp_path / "target")
        return
    moto: MotoS3 = request.getfixturevalue("s3_moto")
    yield moto.object_store("backups")


def _take(tmp: Path, kv: RocksKV, target: ObjectStore, ring: Keyring, now_ms: int) -> b.Manifest:
    cps = b.checkpoint([b.StoreSource("state", kv, SPACES)], tmp / f"work-{now_ms}")
    keys = b.KeyringBlob(ring=ring, salt=b"salt", wrapped=ring.wrap(ROOT), root_key=ROOT)
    return b.upload(target, cps, keys, backup_id=b.new_backup_id(now_ms), now_ms=now_ms)


def test_a_crashed_backup_and_a_half_pruned_one_are_swept_after_the_grace(
    target: ObjectStore, tmp_path: Path
) -> None:
    kv = RocksKV(tmp_path / "live", SPACES)
    ring = Keyring.generate()
    now = int(time.time() * 1000)
    kv.write([("a", f"k{j:04d}".encode(), b"v" * 100) for j in range(300)], sync=True)
    kept = _take(tmp_path, kv, target, ring, now - 2000)
    kv.write([("a", b"later", b"w" * 100)], sync=True)
    pruned = _take(tmp_path, kv, target, ring, now - 1000)  # incremental: it names kept's files
    assert any(f.backup == kept.id for f in pruned.files)
    # A half-finished prune: the manifest went first, one of its own objects too.
    own = sorted(f.object_key for f in pruned.files if f.backup == pruned.id)
    target.delete(f"{pruned.id}/{b.MANIFEST}")
    target.delete(own[0])
    # A crashed backup: files uploaded, no manifest.
    crashed = b.new_backup_id(now)
    target.put(f"{crashed}/state/000009.sst", b"partial")
    target.put(f"{crashed}/joblog/CURRENT", b"partial")
    target.put("README", b"not kiok's")

    dated: dict[str, int] = dict(target.list_dated(""))
    assert set(dated) == set(target.list(""))
    assert all(abs(at - now) < 10 * 60_000 for at in dated.values()), dated  # the store's clock

    # Everything is recent: it might be a backup in progress on another master.
    assert sweep_orphans(target, now) == []
    later = now + ORPHAN_GRACE_MS + 60_000
    swept = sweep_orphans(target, later)
    assert swept == sorted([*own[1:], f"{crashed}/joblog/CURRENT", f"{crashed}/state/000009.sst"])
    left = set(target.list(""))
    assert left == {f"{kept.id}/{b.MANIFEST}", "README", *(f.object_key for f in kept.files)}
    if isinstance(target, DirObjectStore):  # no empty directory is left of either
        assert not (target.root / crashed).exists() and not (target.root / pruned.id).exists()
        assert (target.root / kept.id / "state").is_dir()
    assert sweep_orphans(target, later) == []  # idempotent
    # What stays still restores.
    manifest, opened = b.open_manifest(target, kept.id, lambda _salt: ROOT)
    restored = b.fetch_verified(target, manifest, opened, tmp_path / "restore")
    assert (restored["state"] / "CURRENT").exists()
    kv.close()
