"""kiok.store.backup over real RocksDB and a directory target: checkpoint, encrypted upload,
incremental reuse by content hash, verified fetch, and replacing a live store's content."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from kiok.master.backups import scratch_failures
from kiok.security.kms import Cipher, Keyring
from kiok.store import backup as b
from kiok.store.kv import RocksKV
from kiok.store.objects import DirObjectStore, ObjectStoreUnavailable

SPACES = ("a", "kms")
ROOT = os.urandom(32)


def _keys(ring: Keyring) -> b.KeyringBlob:
    return b.KeyringBlob(ring=ring, salt=b"salt", wrapped=ring.wrap(ROOT), root_key=ROOT)


def _unlock(salt: bytes) -> bytes:
    assert salt == b"salt"
    return ROOT


def _take(tmp: Path, kv: RocksKV, target: DirObjectStore, ring: Keyring, now_ms: int) -> b.Manifest:
    scratch = tmp / f"work-{now_ms}"
    cps = b.checkpoint([b.StoreSource("state", kv, SPACES)], scratch)
    return b.upload(target, cps, _keys(ring), backup_id=b.new_backup_id(now_ms), now_ms=now_ms)


@pytest.fixture
def kv(tmp_path: Path) -> RocksKV:
    store = RocksKV(tmp_path / "live", SPACES)
    store.write([("a", f"k{i:04d}".encode(), b"value-%d" % i) for i in range(3000)], sync=True)
    store.write([("kms", b"raft/applied", b"7")], sync=True)
    return store


def test_a_backup_round_trips_into_another_store_and_keeps_its_applied_index(
    tmp_path: Path, kv: RocksKV
) -> None:
    target = DirObjectStore(tmp_path / "target")
    ring = Keyring.generate()
    manifest = _take(tmp_path, kv, target, ring, 1_700_000_000_000)
    assert manifest.base is None and manifest.files
    # Nothing in the target holds the plaintext.
    for path in (tmp_path / "target").rglob("*"):
        if path.is_file() and path.name != b.MANIFEST:
            assert b"value-1234" not in path.read_bytes()

    other = RocksKV(tmp_path / "other", SPACES)
    other.write([("a", b"zzz", b"gone after restore"), ("kms", b"raft/applied", b"42")], sync=True)
    opened, ring2 = b.open_manifest(target, manifest.id, _unlock)
    assert opened == manifest
    cps = b.fetch_verified(target, opened, ring2, tmp_path / "restore")
    source = b.StoreSource("state", other, SPACES, keep=(("kms", b"raft/applied"),))
    b.check_openable(cps, [source])
    b.replace_contents(source, cps["state"])
    assert other.get("a", b"zzz") is None
    assert other.get("a", b"k2999") == b"value-2999"
    assert other.get("kms", b"raft/applied") == b"42"


def test_an_unchanged_file_is_not_uploaded_again(tmp_path: Path, kv: RocksKV) -> None:
    target = DirObjectStore(tmp_path / "target")
    ring = Keyring.generate()
    first = _take(tmp_path, kv, target, ring, 1_700_000_000_000)
    kv.write([("a", b"new", b"one more")], sync=True)
    second = _take(tmp_path, kv, target, ring, 1_700_000_001_000)
    assert second.base == first.id
    reused = [f for f in second.files if f.backup == first.id]
    assert any(f.name.endswith(".sst") for f in reused), second.files
    uploaded = {p.name for p in (tmp_path / "target" / second.id / "state").iterdir()}
    assert not any(f.name in uploaded for f in reused)
    assert [m.id for m in b.newest_first(b.manifests(target))] == [second.id, first.id]
    # The incremental one restores whole.
    _, ring2 = b.open_manifest(target, second.id, _unlock)
    cps = b.fetch_verified(target, second, ring2, tmp_path / "restore")
    fresh = RocksKV(tmp_path / "fresh", SPACES)
    b.replace_contents(b.StoreSource("state", fresh, SPACES), cps["state"])
    assert fresh.get("a", b"new") == b"one more" and fresh.get("a", b"k0000") == b"value-0"
    # Another keyring lineage never borrows the first one's objects.
    third = _take(tmp_path, kv, target, Keyring.generate(), 1_700_000_002_000)
    assert third.base is None and all(f.backup == third.id for f in third.files)


def test_a_backup_after_restoring_an_older_one_never_borrows_objects_its_keyring_cannot_open(
    tmp_path: Path, kv: RocksKV
) -> None:
    """B1, a rotation of the backup key, B2 (sealed with v2), then B1 restored (its keyring
    has v1 only): a backup now must not reference B2's objects, nor those of a backup made
    after a second rotation of the restored keyring (a v2 again, another key)."""
    target = DirObjectStore(tmp_path / "target")
    ring = Keyring.generate()
    first = _take(tmp_path, kv, target, ring, 1_700_000_000_000)
    kv.write([("a", f"n{i:04d}".encode(), b"more-%d" % i) for i in range(2000)], sync=True)
    rotated = ring.rotated(b.KEY_NAME)
    second = _take(tmp_path, kv, target, rotated, 1_700_000_001_000)
    assert {f.backup for f in second.files} == {first.id, second.id}
    third = _take(tmp_path, kv, target, ring, 1_700_000_002_000)  # the keyring of B1, restored
    assert third.base == first.id
    assert all(f.backup in (first.id, third.id) for f in third.files), third.files
    rerotated = ring.rotated(b.KEY_NAME)  # v2 again, not B2's v2
    fourth = _take(tmp_path, kv, target, rerotated, 1_700_000_003_000)
    assert not any(f.backup == second.id for f in fourth.files), fourth.files
    for made, keys in ((third, ring), (fourth, rerotated)):
        opened, its_ring = b.open_manifest(target, made.id, _unlock)
        assert its_ring.versions == keys.versions
        cps = b.fetch_verified(target, opened, its_ring, tmp_path / f"restore-{made.id}")
        fresh = RocksKV(tmp_path / f"fresh-{made.id}", SPACES)
        b.replace_contents(b.StoreSource("state", fresh, SPACES), cps["state"])
        assert fresh.get("a", b"n1999") == b"more-1999"


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_a_damaged_object_is_refused_by_hash(tmp_path: Path, kv: RocksKV, damage: str) -> None:
    target = DirObjectStore(tmp_path / "target")
    ring = Keyring.generate()
    manifest = _take(tmp_path, kv, target, ring, 1_700_000_000_000)
    victim = max(manifest.files, key=lambda f: f.size)
    path = tmp_path / "target" / victim.object_key
    data = path.read_bytes()
    if damage == "flip":
        path.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.unlink()
    _, ring2 = b.open_manifest(target, manifest.id, _unlock)
    with pytest.raises(b.BackupCorrupt, match=victim.name):
        b.fetch_verified(target, manifest, ring2, tmp_path / "restore")


def test_an_altered_manifest_or_a_wrong_master_key_is_refused(tmp_path: Path, kv: RocksKV) -> None:
    target = DirObjectStore(tmp_path / "target")
    manifest = _take(tmp_path, kv, target, Keyring.generate(), 1_700_000_000_000)
    # Another master key (another cluster's backup): refused as a conflict (409), not a 500.
    with pytest.raises(b.BackupCorrupt, match="another master key"):
        b.open_manifest(target, manifest.id, lambda salt: os.urandom(32))
    path = tmp_path / "target" / manifest.id / b.MANIFEST
    # A forged manifest whose keyring is too short to decrypt: refused, nothing unwrapped.
    original = path.read_bytes()
    body = json.loads(original)
    body["keyring"]["wrapped"] = "AAAA"
    path.write_text(json.dumps(body))
    with pytest.raises(b.BackupCorrupt, match="altered"):
        b.open_manifest(target, manifest.id, _unlock)
    path.write_bytes(original)
    path.write_bytes(path.read_bytes().replace(b'"size": ', b'"size": 1', 1))
    with pytest.raises(b.BackupCorrupt, match="altered"):
        b.open_manifest(target, manifest.id, _unlock)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda m: m.replace(b'"size"', b'"sizf"', 1), "no field 'size'"),
        (lambda m: m.replace(b'"files": [', b'"files": [[],', 1), "a field of the wrong kind"),
        (lambda m: m.replace(b'"createdMs": ', b'"createdMs": "x', 1), "not JSON: "),
        (lambda m: m.replace(b'"createdMs": ', b'"createdMs": "x",  "z": ', 1), "a field of the wrong value"),
        (lambda m: m.replace(b'"format": ', b'"format": 9', 1), "format 9"),
        (lambda m: m.replace(b'"format": ', b'"formal": ', 1), "no field 'format'"),
        (lambda m: m.replace(b'"id": ', b'"ib": ', 1), "no field 'id'"),
        (lambda m: m.replace(b'"id": "', b'"id": "x', 1), "its id 'x"),
        (lambda m: b"\x80" + m, "not JSON: not UTF-8 text"),
    ],
)
def test_a_manifest_that_does_not_read_says_what_is_wrong_in_words(
    tmp_path: Path, kv: RocksKV, change: Callable[[bytes], bytes], why: str
) -> None:
    """The lifecycle probe of session 29: a field renamed said ``is not readable ('size')``."""
    target = DirObjectStore(tmp_path / "target")
    manifest = _take(tmp_path, kv, target, Keyring.generate(), 1_700_000_000_000)
    path = tmp_path / "target" / manifest.id / b.MANIFEST
    path.write_bytes(change(path.read_bytes()))
    with pytest.raises(b.BackupCorrupt) as e:
        b.open_manifest(target, manifest.id, _unlock)
    assert e.value.message.startswith(f"backup {manifest.id}: manifest.json is not readable ({why}"), e.value
    assert e.value.message.endswith("): it was altered, or it is not a kiok backup's")


def test_sealed_chunks_detect_a_dropped_tail(tmp_path: Path) -> None:
    ring = Keyring.generate()
    cipher = Cipher(ring, b.KEY_NAME)
    path = tmp_path / "f"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    sha = b._sha256_file(path)
    chunks = list(b.sealed_chunks(path, sha, cipher))
    assert len(chunks) == 5  # magic + 4 chunks
    whole = b"".join(chunks)
    assert b"".join(b.open_object(whole, sha, cipher, "x")) == path.read_bytes()
    with pytest.raises(b.BackupCorrupt):
        list(b.open_object(b"".join(chunks[:-1]), sha, cipher, "x"))


def test_forged_manifests_are_not_trusted_for_pruning_or_as_a_base(tmp_path: Path, kv: RocksKV) -> None:
    """Someone who can write to the target but lacks the master key plants manifests of the
    same lineage, newer than the real ones, pointing at their own objects, and a manifest that
    does not even parse (JSON nested past the recursion limit): pruning must not take them for
    the newest (and delete the real backups), the next backup must not reference their
    objects, and listing or backing up must not fail."""
    from kiok.store.backup_prune import prune

    target = DirObjectStore(tmp_path / "target")
    ring = Keyring.generate()
    real = _take(tmp_path, kv, target, ring, 1_700_000_000_000)
    for i in range(2):
        forged_id = b.new_backup_id(1_800_000_000_000 + i)
        body = json.loads((tmp_path / "target" / real.id / b.MANIFEST).read_bytes())
        body.update(id=forged_id, createdMs=1_800_000_000_000 + i, mac="0" * 64)
        for f in body["files"]:
            f.update(backup=forged_id, object=f"{forged_id}/junk")
        target.put(f"{forged_id}/junk", b"attacker bytes")
        target.put(f"{forged_id}/{b.MANIFEST}", json.dumps(body).encode())
    target.put(f"{b.new_backup_id(1_900_000_000_000)}/{b.MANIFEST}", b"[" * 200_000)

    assert prune(target, 1, real.ring_id, ROOT) == []
    assert target.exists(f"{real.id}/{b.MANIFEST}")
    kv.write([("a", b"new", b"one more")], sync=True)
    second = _take(tmp_path, kv, target, ring, 1_700_000_001_000)
    assert second.base == real.id
    assert all(f.backup in (real.id, second.id) for f in second.files)
    _, ring2 = b.open_manifest(target, second.id, _unlock)
    b.fetch_verified(target, second, ring2, tmp_path / "restore")


def test_an_object_swollen_in_the_target_is_refused_without_reading_it_whole(
    tmp_path: Path, kv: RocksKV
) -> None:
    target = DirObjectStore(tmp_path / "target")
    manifest = _take(tmp_path, kv, target, Keyring.generate(), 1_700_000_000_000)
    victim = min(manifest.files, key=lambda f: f.size)
    (tmp_path / "target" / victim.object_key).write_bytes(b"\0" * (16 << 20))
    read: list[int] = []

    class Counting(DirObjectStore):
        def get(self, key: str) -> bytes:
            data = super().get(key)
            read.append(len(data))
            return data

        def get_range(self, key: str, start: int, end: int) -> bytes:
            data = super().get_range(key, start, end)
            read.append(len(data))
            return data

    counting = Counting(tmp_path / "target")
    opened, ring2 = b.open_manifest(counting, manifest.id, _unlock)
    with pytest.raises(b.BackupCorrupt, match=victim.name):
        b.fetch_verified(counting, opened, ring2, tmp_path / "restore")
    assert max(read) <= max(f.stored_size for f in manifest.files) + 1


def test_the_listing_shows_only_authentic_backups_and_names_the_rest(tmp_path: Path, kv: RocksKV) -> None:
    """A manifest planted in the target (forged MAC, newer than the real backup), one made
    with another master key (its salt derives a root key its MAC does not hold under) and one
    that does not parse are not listed as backups: each is named apart, with why, and no
    field it claims is shown."""
    target = DirObjectStore(tmp_path / "target")
    real = _take(tmp_path, kv, target, Keyring.generate(), 1_700_000_000_000)
    body = json.loads((tmp_path / "target" / real.id / b.MANIFEST).read_bytes())
    forged_id = b.new_backup_id(1_800_000_000_000)
    target.put(
        f"{forged_id}/{b.MANIFEST}",
        json.dumps({**body, "id": forged_id, "createdMs": 1_800_000_000_000, "mac": "0" * 64}).encode(),
    )
    # A MAC of non-ASCII text made the check raise (TypeError): every listing, and so every
    # backup (it lists to find its base), failed until someone found the file.
    accented_id = b.new_backup_id(1_800_000_000_003)
    target.put(
        f"{accented_id}/{b.MANIFEST}",
        json.dumps({**body, "id": accented_id, "createdMs": 1_800_000_000_003, "mac": "\u00e9"}).encode(),
    )
    other_id = b.new_backup_id(1_800_000_000_001)
    other = {**body, "id": other_id, "keyring": {**body["keyring"], "salt": "b3RoZXI="}}
    target.put(f"{other_id}/{b.MANIFEST}", json.dumps(other).encode())
    garbled_id = b.new_backup_id(1_800_000_000_002)
    target.put(f"{garbled_id}/{b.MANIFEST}", b"{not json")
    salts: list[bytes] = []

    def unlock(salt: bytes) -> bytes | None:
        salts.append(salt)
        return ROOT if salt == b"salt" else os.urandom(32)

    listing = b.list_checked(target, unlock)
    assert [m.id for m in listing.backups] == [real.id]
    assert {r.id for r in listing.rejected} == {forged_id, other_id, garbled_id, accented_id}
    problems = {r.id: r.problem for r in listing.rejected}
    assert "MAC" in problems[forged_id] and "MAC" in problems[other_id] and "MAC" in problems[accented_id]
    assert "does not read" in problems[garbled_id]
    assert sorted(set(salts)) == [b"other", b"salt"]  # each salt unlocked once
    # A salt the caller will not derive (its budget spent): named, never listed as a backup.
    capped = b.list_checked(target, lambda salt: ROOT if salt == b"salt" else None)
    assert [m.id for m in capped.backups] == [real.id]
    assert "not checked" in {r.id: r.problem for r in capped.rejected}[other_id]


def test_planted_manifests_are_read_one_at_a_time(tmp_path: Path, kv: RocksKV) -> None:
    """Anyone who can write to the target can plant manifests (each up to
    ``MAX_MANIFEST_BYTES``): listing, pruning, finding a backup's base and the orphan sweep
    hold one of them at a time, whatever their number (all of them were held: 10 planted
    giants took 1.4 GiB and each listing 26 s). Counted at each manifest read: how many
    planted manifests are alive, decoded."""
    import gc

    from kiok.store.backup_orphans import sweep_orphans
    from kiok.store.backup_prune import prune

    planted: set[str] = set()
    alive: list[int] = []

    class Watched(DirObjectStore):
        def get_range(self, key: str, start: int, end: int) -> bytes:
            if key.endswith(b.MANIFEST):
                decoded = [o for o in gc.get_objects() if isinstance(o, b.Manifest)]
                alive.append(sum(1 for m in decoded if m.id in planted))
            return super().get_range(key, start, end)

    target = Watched(tmp_path / "target")
    ring = Keyring.generate()
    real = _take(tmp_path, kv, target, ring, 1_700_000_000_000)
    body = json.loads((tmp_path / "target" / real.id / b.MANIFEST).read_bytes())
    for n in range(8):
        planted_id = b.new_backup_id(1_800_000_000_000 + n)
        doc = {**body, "id": planted_id, "createdMs": 1_800_000_000_000 + n, "mac": "0" * 64}
        target.put(f"{planted_id}/{b.MANIFEST}", json.dumps(doc).encode())
        planted.add(planted_id)
    calls: dict[str, Callable[[], object]] = {
        "list": lambda: b.list_checked(target, _unlock),
        "base": lambda: b.latest_base(target, _keys(ring)),
        "prune": lambda: prune(target, 5, b.ring_id(ring), ROOT),
        "orphans": lambda: sweep_orphans(target, 1_900_000_000_000),
    }
    for name, call in calls.items():
        alive.clear()
        call()
        assert len(alive) >= len(planted) and max(alive) <= 1, (name, alive)
    listing = b.list_checked(target, _unlock)
    assert [m.id for m in listing.backups] == [real.id]
    assert {r.id for r in listing.rejected} == planted
    latest = b.latest_base(target, _keys(ring))
    assert latest is not None and latest.id == real.id


def test_a_target_directory_that_cannot_be_written_is_refused_by_name(tmp_path: Path) -> None:
    """Found by the lifecycle probe: a full or read-only backup directory (ENOSPC, EROFS) was
    a 500 "internal error" and a traceback. Here a file stands where a directory must go."""
    store = DirObjectStore(tmp_path / "target")
    (tmp_path / "target" / "b1").write_text("in the way")
    with pytest.raises(ObjectStoreUnavailable) as refused:
        store.put("b1/state/000001.sst", b"x")
    assert refused.value.message.startswith(f"{tmp_path / 'target'}: cannot write b1/state/000001.sst: ")
    assert store.list("") == ["b1"]  # nothing half-written left


def test_what_the_work_directory_refuses_is_said_by_name() -> None:
    """RocksDB's "IO error" (a full disk under ``<data>/backup-work``) and the file system's
    own refusals are a 503 naming the directory; kiok's refusals pass as they are."""
    scratch = Path("/data/backup-work/b1")
    for raised, why in (
        (Exception("IO error: No space left on device: /data/backup-work/b1/state.tmp/CURRENT"), "IO error"),
        (OSError(errno.EROFS, "Read-only file system"), "Read-only file system"),
    ):
        with pytest.raises(b.ScratchUnavailable) as refused, scratch_failures(scratch, "copy the stores"):
            raise raised
        assert refused.value.message.startswith(f"/data/backup-work: cannot copy the stores: {why}")
    with pytest.raises(b.BackupCorrupt), scratch_failures(scratch, "unpack the backup"):
        raise b.BackupCorrupt("backup b1: object x is truncated")
