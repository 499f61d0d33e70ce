"""A restore killed mid-swap is finished at the next start from its redo marker: on a single
master at once; with several masters the marker stays (swapped) until the Raft entry that
carries the restore is written, so the journal's replay of it does not swap twice."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kiok.security.kms import Keyring
from kiok.store import backup as b
from kiok.store.kv import RocksKV
from kiok.store.objects import DirObjectStore
from kiok.store.restore import MARKER, RestoreInterrupted, finish_interrupted, restored_here, swap_in

SPACES = ("a", "kms")
ROOT = os.urandom(32)
APPLIED = ("kms", b"raft/applied")


class Crash(Exception):
    pass


def _stores(root: Path, tag: bytes, applied: bytes) -> list[RocksKV]:
    out = []
    for name in ("state", "joblog"):
        kv = RocksKV(root / name, SPACES)
        kv.write([("a", b"%s-%d" % (name.encode(), i), tag) for i in range(50)], sync=True)
        kv.write([("a", b"only-" + tag, b"1"), (*APPLIED, applied)], sync=True)
        out.append(kv)
    return out


def _sources(stores: list[RocksKV]) -> list[b.StoreSource]:
    return [
        b.StoreSource(n, kv, SPACES, keep=(APPLIED,))
        for n, kv in zip(("state", "joblog"), stores, strict=True)
    ]


def _verified_backup(tmp: Path) -> tuple[str, dict[str, Path]]:
    """A backup of two stores holding 'backup', fetched and verified into a scratch dir."""
    original = _stores(tmp / "original", b"backup", b"3")
    target = DirObjectStore(tmp / "target")
    ring = Keyring.generate()
    keys = b.KeyringBlob(ring=ring, salt=b"salt", wrapped=ring.wrap(ROOT), root_key=ROOT)
    cps = b.checkpoint(_sources(original), tmp / "work")
    manifest = b.upload(target, cps, keys, backup_id=b.new_backup_id(1_700_000_000_000), now_ms=1)
    _, opened = b.open_manifest(target, manifest.id, lambda salt: ROOT)
    return manifest.id, b.fetch_verified(
        target, manifest, opened, tmp / "data" / "restore-work" / manifest.id
    )


def _crash_after_first_store(store: str) -> None:
    if store == "state":
        raise Crash(store)


def _holds_backup(kv: RocksKV, name: str) -> bool:
    return (
        kv.get("a", b"%s-7" % name.encode()) == b"backup"
        and kv.get("a", b"only-backup") == b"1"
        and kv.get("a", b"only-live") is None
    )


@pytest.mark.parametrize("index", [None, 9])
def test_a_crash_mid_swap_is_finished_at_the_next_start(tmp_path: Path, index: int | None) -> None:
    backup_id, checkpoints = _verified_backup(tmp_path)
    data = tmp_path / "data"
    live = _stores(data, b"live", b"8")
    marker = data / MARKER
    with pytest.raises(Crash):
        swap_in(
            _sources(live),
            checkpoints,
            marker,
            backup_id=backup_id,
            index=index,
            between=_crash_after_first_store,
        )
    # Killed between the stores: the state store holds the backup, the job-log store does not.
    assert _holds_backup(live[0], "state") and not _holds_backup(live[1], "joblog")
    assert json.loads(marker.read_text())["phase"] == "swapping"
    for kv in live:
        kv.close()

    restarted = [RocksKV(data / name, SPACES) for name in ("state", "joblog")]
    finished = finish_interrupted(data, _sources(restarted), applied=8)
    assert finished is not None and finished.backup_id == backup_id
    assert _holds_backup(restarted[0], "state") and _holds_backup(restarted[1], "joblog")
    # Each store kept its own applied index: the Raft entry's write moves it, not the swap.
    assert [kv.get(*APPLIED) for kv in restarted] == [b"8", b"8"]
    assert not any(p.exists() for p in checkpoints.values())
    if index is None:
        assert not marker.exists()
    else:
        # The journal replays entry 9 (the store applied 8): its swap is already done.
        assert restored_here(marker, backup_id, 9) and not restored_here(marker, backup_id, 10)
        assert finish_interrupted(data, _sources(restarted), applied=8) is None and marker.exists()
        restarted[0].write([(*APPLIED, b"9")], sync=True)  # the entry is written
        assert finish_interrupted(data, _sources(restarted), applied=9) is None
        assert not marker.exists()
    assert finish_interrupted(data, _sources(restarted), applied=9) is None


def test_a_crash_before_the_marker_leaves_the_stores_alone(tmp_path: Path) -> None:
    _verified_backup(tmp_path)  # fetched and verified, then the master died
    data = tmp_path / "data"
    live = _stores(data, b"live", b"8")
    assert finish_interrupted(data, _sources(live), applied=8) is None
    assert live[0].get("a", b"only-live") == b"1"


def test_an_interrupted_restore_without_its_copy_refuses_to_start(tmp_path: Path) -> None:
    backup_id, checkpoints = _verified_backup(tmp_path)
    data = tmp_path / "data"
    live = _stores(data, b"live", b"8")
    with pytest.raises(Crash):
        swap_in(
            _sources(live),
            checkpoints,
            data / MARKER,
            backup_id=backup_id,
            index=None,
            between=_crash_after_first_store,
        )
    for path in checkpoints.values():
        for f in path.iterdir():
            f.unlink()
    with pytest.raises(RestoreInterrupted, match=backup_id):
        finish_interrupted(data, _sources(live), applied=0)
