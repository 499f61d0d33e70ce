"""Backups of every store: consistent RocksDB checkpoints, encrypted file by file, put in an
object store under one backup id with a ``manifest.json``; and the verified way back.

Layout in the target (a directory or an S3 prefix)::

    <id>/manifest.json            written last: a backup without it is incomplete, ignored
    <id>/<store>/<file name>      one object per checkpoint file this backup uploaded

Incremental: a checkpoint file whose plaintext sha256 is already held by the newest earlier
backup made with the same keyring (``ringId``) is not uploaded again; its manifest entry names
the backup that holds the object (``backup``). SST files are immutable, so a quiet store costs
only its small MANIFEST/OPTIONS/WAL files.

Each object is the file in 1 MiB chunks, each sealed with the ``backup-encryption`` data key
(AES-GCM, associated data binding the file's plaintext hash, the chunk's index and whether it
is the last: chunks cannot be reordered, swapped between files or dropped at the end). The
manifest carries the keyring wrapped by the root key (as the ``kms`` keyspace holds it), so a
fresh master with the same ``KIOK_MASTER_KEY`` can open it, and an HMAC under the root key.

Restore verifies before it touches anything: every object's size and sha256 as stored, then
its plaintext sha256 after decryption, into a scratch directory; only a backup that passes
whole is copied into the live stores (``replace_contents``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
import struct
from base64 import b64decode, b64encode
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from rocksdict import AccessType, Options, Rdict

from kiok.errors import Conflict, NotFound, NotReady
from kiok.security.kms import Cipher, Keyring, WrongMasterKey
from kiok.store.kv import RocksKV, Write
from kiok.store.objects import ObjectMissing, ObjectStore

FORMAT = 1
KEY_NAME = "backup-encryption"
MANIFEST = "manifest.json"
_MAGIC = b"KIOKBK1\n"
_CHUNK = 1024 * 1024
_LEN = struct.Struct(">I")
_COPY_BATCH = 2000
#: A ``manifest.json`` larger than this is not read (a real one is ~300 bytes per file: this
#: is ~55,000 checkpoint files, terabytes of SST files; decoded, ~0.1 GB of memory at once).
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


class BackupCorrupt(Conflict):
    """A backup object is missing, truncated or altered: the restore is refused."""

    code = "backup_corrupt"


class ScratchUnavailable(NotReady):
    """The master's own work directory for a backup or a restore (``<data>/backup-work``,
    ``<data>/restore-work``) cannot be written: a full or read-only disk. Nothing was
    backed up or restored; the stores are as they were."""

    code = "scratch_unavailable"


@dataclass(frozen=True)
class StoreSource:
    """One store to back up or restore: its name in the backup, the open RocksDB and its
    keyspaces; ``keep`` are (keyspace, key) pairs a restore leaves as the live store has them
    (each store's Raft applied index: it belongs to this master's log, not to the backup)."""

    name: str
    kv: RocksKV
    spaces: tuple[str, ...]
    keep: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class FileEntry:
    store: str
    name: str
    size: int
    sha256: str
    stored_size: int
    stored_sha256: str
    #: The backup whose objects hold this file (this one, or an earlier one)...
    backup: str
    #: ...and the object's key in the target (an earlier file with the same content may
    #: have had another name).
    object_key: str


@dataclass(frozen=True)
class Manifest:
    id: str
    created_ms: int
    base: str | None
    stores: tuple[str, ...]
    files: tuple[FileEntry, ...]
    ring_id: str
    keyring_salt: bytes
    keyring_wrapped: bytes
    master: str = ""
    #: sha256 of ``manifest.json`` as stored (not part of it): names this exact backup, so a
    #: replicated restore applies the same bytes on every master.
    digest: str = ""
    #: The HMAC the manifest claims (``authentic`` checks it).
    mac: str = field(default="", compare=False)

    @property
    def size(self) -> int:
        """Bytes of the stores as backed up (plaintext)."""
        return sum(f.size for f in self.files)

    @property
    def uploaded_bytes(self) -> int:
        """Bytes this backup stored itself (the rest is held by earlier ones)."""
        return sum(f.stored_size for f in self.files if f.backup == self.id)

    def body(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "id": self.id,
            "createdMs": self.created_ms,
            "base": self.base,
            "master": self.master,
            "stores": list(self.stores),
            "ringId": self.ring_id,
            "keyring": {
                "salt": b64encode(self.keyring_salt).decode(),
                "wrapped": b64encode(self.keyring_wrapped).decode(),
            },
            "files": [
                {
                    "store": f.store,
                    "name": f.name,
                    "size": f.size,
                    "sha256": f.sha256,
                    "storedSize": f.stored_size,
                    "storedSha256": f.stored_sha256,
                    "backup": f.backup,
                    "object": f.object_key,
                }
                for f in self.files
            ],
        }


# --- ids, keys and the manifest -----------------------------------------------------------


def new_backup_id(now_ms: int) -> str:
    """Sortable by time (newest last in byte order), unique enough: 20240131T120000123Z-a1b2c3."""
    stamp = datetime.fromtimestamp(now_ms / 1000, tz=UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}{now_ms % 1000:03d}Z-{secrets.token_hex(3)}"


def valid_backup_id(backup_id: str) -> bool:
    return (
        0 < len(backup_id) <= 64
        and all(ch.isalnum() or ch in "-_" for ch in backup_id)
        and backup_id[0].isalnum()
    )


def ring_id(ring: Keyring) -> str:
    """Names the keyring lineage (its first backup key version survives every rotation):
    only backups of one lineage share objects."""
    first = ring.versions[KEY_NAME][min(ring.versions[KEY_NAME])]
    return hashlib.sha256(b"kiok-backup-ring\0" + first).hexdigest()[:24]


def _mac(root_key: bytes, body: dict[str, object]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(root_key, b"kiok-backup-manifest\0" + canonical, hashlib.sha256).hexdigest()


def encode_manifest(manifest: Manifest, root_key: bytes) -> bytes:
    body = manifest.body()
    return json.dumps({**body, "mac": _mac(root_key, body)}, indent=1).encode()


def decode_manifest(raw: bytes, backup_id: str) -> Manifest:
    """The manifest as written; BackupCorrupt when it does not parse (its MAC is checked by
    ``open_manifest`` or ``authentic``, which have the root key). Nothing in it is trusted
    before that: anyone who can write to the target can put one there."""
    try:
        doc = json.loads(raw)
        mac = doc.get("mac", "")
        if doc["format"] != FORMAT:
            raise ValueError(f"format {doc['format']!r}, not one this kiok reads")
        if doc["id"] != backup_id:
            raise ValueError(f"its id {doc['id']!r} is not the backup's")
        files = tuple(
            FileEntry(
                store=str(f["store"]),
                name=str(f["name"]),
                size=int(f["size"]),
                sha256=str(f["sha256"]),
                stored_size=int(f["storedSize"]),
                stored_sha256=str(f["storedSha256"]),
                backup=str(f["backup"]),
                object_key=str(f["object"]),
            )
            for f in doc["files"]
        )
        return Manifest(
            id=backup_id,
            created_ms=int(doc["createdMs"]),
            base=doc.get("base"),
            stores=tuple(doc["stores"]),
            files=files,
            ring_id=str(doc["ringId"]),
            keyring_salt=b64decode(doc["keyring"]["salt"]),
            keyring_wrapped=b64decode(doc["keyring"]["wrapped"]),
            master=str(doc.get("master") or ""),
            digest=hashlib.sha256(raw).hexdigest(),
            mac=mac if isinstance(mac, str) else "",
        )
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise BackupCorrupt(
            f"backup {backup_id}: {MANIFEST} is not readable ({_unreadable(e)}): it was altered, "
            "or it is not a kiok backup's"
        ) from None


def _unreadable(e: Exception) -> str:
    """What is wrong with a manifest, in words (Python's own were ``'size'`` for a missing
    field, found by the lifecycle probe of session 29)."""
    if isinstance(e, KeyError):
        return f"no field {e.args[0]!r}" if e.args else "a field is missing"
    if isinstance(e, json.JSONDecodeError):
        return f"not JSON: {e.msg} (line {e.lineno})"
    if isinstance(e, UnicodeDecodeError):
        return "not JSON: not UTF-8 text"
    if isinstance(e, TypeError | AttributeError):
        return "a field of the wrong kind"
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return str(e) if str(e).startswith(("format ", "its id ")) else "a field of the wrong value"


def read_manifest(target: ObjectStore, backup_id: str) -> bytes:
    """The raw ``manifest.json`` of a backup, at most ``MAX_MANIFEST_BYTES`` read
    (BackupCorrupt beyond: a planted giant must not exhaust memory); ObjectMissing."""
    raw = target.get_range(f"{backup_id}/{MANIFEST}", 0, MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise BackupCorrupt(f"backup {backup_id}: {MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
    return raw


def manifest_ids(target: ObjectStore) -> list[str]:
    """The ids of every backup with a ``manifest.json`` in the target (complete ones)."""
    ids = []
    for key in target.list(""):
        backup_id, _, rest = key.partition("/")
        if rest == MANIFEST and valid_backup_id(backup_id):
            ids.append(backup_id)
    return ids


def manifests(target: ObjectStore) -> Iterator[Manifest]:
    """Every readable manifest in the target, one at a time (unreadable ones skipped). Not
    authenticated: what decides anything (pruning, the base of a backup) keeps only those
    ``authentic`` passes; a restore checks the MAC itself; what is shown is
    ``list_checked``. One at a time because anyone who can write to the target can plant
    manifests of up to ``MAX_MANIFEST_BYTES``: a caller keeps what it needs of each (an
    authentic one, the object keys that exist), never all of them."""
    for backup_id in manifest_ids(target):
        try:
            yield decode_manifest(read_manifest(target, backup_id), backup_id)
        except (BackupCorrupt, ObjectMissing):
            continue


def newest_first(found: Iterable[Manifest]) -> list[Manifest]:
    return sorted(found, key=lambda m: (m.created_ms, m.id), reverse=True)


def lineage(target: ObjectStore, ring: str, root_key: bytes) -> list[Manifest]:
    """The authentic backups of keyring lineage ``ring``, newest first."""
    return newest_first(m for m in manifests(target) if m.ring_id == ring and authentic(m, root_key))


@dataclass(frozen=True)
class Rejected:
    """A ``manifest.json`` in the target that is not shown as a backup, and why (nothing it
    claims is shown: it is not authenticated)."""

    id: str
    problem: str


@dataclass(frozen=True)
class Listing:
    #: The backups whose MAC holds (what a restore would accept), newest first.
    backups: list[Manifest]
    #: The other manifests, by id.
    rejected: list[Rejected]


#: Why a manifest whose keyring salt got no key (``list_checked``'s ``unlock``) is not listed.
NOT_CHECKED = "not checked (too many keyrings in the target); not listed"
#: Why a manifest whose MAC does not hold is not listed.
NOT_AUTHENTIC = (
    "not authentic: its MAC does not hold (made with another master key, or altered or "
    "planted in the target); it cannot be restored"
)


def list_checked(target: ObjectStore, unlock: Callable[[bytes], bytes | None]) -> Listing:
    """Every manifest in the target, authenticated as ``open_manifest`` does: the root key
    ``unlock(salt)`` gives for the manifest's keyring salt. ``unlock`` may answer None (it
    will not derive another key: each costs a key derivation); that salt's manifests are
    rejected as not checked. Each salt is unlocked once, the salts most manifests share
    first (a few planted ones cannot push a real lineage out).

    Two passes, one manifest held at a time in each (but for the authentic ones): the first
    finds each manifest's salt, the second reads those with a key again and checks them, so
    planted manifests cost reading twice, never memory."""
    rejected: list[Rejected] = []
    by_salt: dict[bytes, list[str]] = {}
    for backup_id in manifest_ids(target):
        try:
            salt = decode_manifest(read_manifest(target, backup_id), backup_id).keyring_salt
        except BackupCorrupt as e:
            rejected.append(Rejected(backup_id, f"{MANIFEST} does not read: {e.message}"))
            continue
        except ObjectMissing:
            continue  # deleted since it was listed
        by_salt.setdefault(salt, []).append(backup_id)
    backups: list[Manifest] = []
    for salt in sorted(by_salt, key=lambda s: -len(by_salt[s])):
        root = unlock(salt)
        for backup_id in by_salt[salt]:
            if root is None:
                rejected.append(Rejected(backup_id, NOT_CHECKED))
                continue
            try:
                m = decode_manifest(read_manifest(target, backup_id), backup_id)
            except BackupCorrupt as e:  # replaced since the first pass
                rejected.append(Rejected(backup_id, f"{MANIFEST} does not read: {e.message}"))
                continue
            except ObjectMissing:
                continue
            if m.keyring_salt == salt and authentic(m, root):
                backups.append(m)
            else:
                rejected.append(Rejected(m.id, NOT_AUTHENTIC))
    return Listing(newest_first(backups), sorted(rejected, key=lambda r: r.id, reverse=True))


def authentic(manifest: Manifest, root_key: bytes) -> bool:
    """Whether the manifest's MAC holds under ``root_key`` (this keyring's: a backup of the
    same lineage was made with the same salt, so the same root key)."""
    # As bytes: ``compare_digest`` raises on a str that is not ASCII, and a planted manifest
    # may carry any text (one such file made every listing, and so every backup, fail).
    return hmac.compare_digest(
        manifest.mac.encode(errors="replace"), _mac(root_key, manifest.body()).encode()
    )


def open_manifest(
    target: ObjectStore, backup_id: str, unlock: Callable[[bytes], bytes]
) -> tuple[Manifest, Keyring]:
    """The backup's manifest, authenticated, and its keyring. ``unlock(salt)`` gives the root
    key the master key derives with that salt. BackupCorrupt (409) when the MAC does not hold:
    altered, forged, or made with another master key."""
    if not valid_backup_id(backup_id):
        raise NotFound(f"backup {backup_id!r} not found")
    try:
        raw = read_manifest(target, backup_id)
    except ObjectMissing:
        raise NotFound(f"backup {backup_id!r} not found") from None
    manifest = decode_manifest(raw, backup_id)
    root = unlock(manifest.keyring_salt)
    if not authentic(manifest, root):  # before anything in it is used
        try:
            Keyring.unwrap(manifest.keyring_wrapped, root)
        except WrongMasterKey:
            raise BackupCorrupt(
                f"backup {backup_id} was made with another master key, or another "
                f"kiok.kms.pbkdf2.iterations (or its {MANIFEST} was altered)"
            ) from None
        except Exception:  # a keyring that does not even parse
            pass
        raise BackupCorrupt(f"backup {backup_id}: {MANIFEST} was altered (its MAC does not match)")
    try:
        ring = Keyring.unwrap(manifest.keyring_wrapped, root)
    except Exception as e:  # authentic, so written by a kiok that could not read it back
        raise BackupCorrupt(f"backup {backup_id}: its keyring does not open ({e})") from None
    return manifest, ring


# --- taking a backup ----------------------------------------------------------------------


def checkpoint(sources: Sequence[StoreSource], scratch: Path) -> dict[str, Path]:
    """A consistent checkpoint of each store under ``scratch/<name>`` (hard links where the
    file system allows; RocksDB flushes the memtable first). The stores are checkpointed in
    order: with the state store first, the job-log store can only be ahead of it."""
    out = {}
    for source in sources:
        dest = scratch / source.name
        source.kv.checkpoint(dest)
        out[source.name] = dest
    return out


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _aad(plain_sha: str, index: int, last: bool) -> bytes:
    return b"kiok-backup\0" + bytes.fromhex(plain_sha) + struct.pack(">QB", index, int(last))


def sealed_chunks(path: Path, plain_sha: str, cipher: Cipher) -> Iterator[bytes]:
    """The file as a stored object: magic, then length-prefixed sealed chunks."""
    yield _MAGIC
    with path.open("rb") as f:
        block = f.read(_CHUNK)
        index = 0
        while True:
            following = f.read(_CHUNK) if block else b""
            last = not following
            sealed = cipher.encrypt(block, _aad(plain_sha, index, last))
            yield _LEN.pack(len(sealed)) + sealed
            if last:
                return
            block, index = following, index + 1


def open_object(data: bytes, plain_sha: str, cipher: Cipher, where: str) -> Iterator[bytes]:
    """The plaintext chunks of a stored object; BackupCorrupt on any framing or tag error."""
    if not data.startswith(_MAGIC):
        raise BackupCorrupt(f"{where}: not a kiok backup object")
    pos, index = len(_MAGIC), 0
    while True:
        if pos + _LEN.size > len(data):
            raise BackupCorrupt(f"{where}: truncated")
        (length,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        sealed = data[pos : pos + length]
        pos += length
        if len(sealed) != length:
            raise BackupCorrupt(f"{where}: truncated")
        last = pos == len(data)
        try:
            yield cipher.decrypt(sealed, _aad(plain_sha, index, last))
        except Exception:
            raise BackupCorrupt(f"{where}: does not decrypt (altered or truncated)") from None
        if last:
            return
        index += 1


class _Hashing:
    """Counts and hashes the bytes of a stream as it is consumed."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.digest = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.digest.update(chunk)
            self.size += len(chunk)
            yield chunk


def latest_base(target: ObjectStore, keys: KeyringBlob) -> Manifest | None:
    """The newest authentic backup of the same keyring lineage whose objects this keyring
    can all open: the base of an incremental one (a planted manifest must not make a backup
    reference objects it never checked). A backup whose keyring holds a backup key this one
    lacks is passed over: after a restore of an older backup, the keyring is the older one,
    and a backup made since the rotation that followed it sealed its objects with a key the
    restored keyring never had (with the same version number as a later rotation's, so the
    keys themselves are compared)."""
    held = keys.ring.versions[KEY_NAME].items()
    for manifest in lineage(target, ring_id(keys.ring), keys.root_key):
        try:
            its = Keyring.unwrap(manifest.keyring_wrapped, keys.root_key).versions[KEY_NAME].items()
        except Exception:  # authentic but unreadable: never a base
            continue
        if its <= held:
            return manifest
    return None


@dataclass(frozen=True)
class KeyringBlob:
    """The keyring as the ``kms`` keyspace holds it, and the key that opens it."""

    ring: Keyring
    salt: bytes
    wrapped: bytes
    root_key: bytes


def upload(
    target: ObjectStore,
    checkpoints: dict[str, Path],
    keys: KeyringBlob,
    *,
    backup_id: str,
    now_ms: int,
    master: str = "",
) -> Manifest:
    """Store the checkpoints as backup ``backup_id``; files the base holds are referenced."""
    rid = ring_id(keys.ring)
    base = latest_base(target, keys)
    held = {(f.sha256, f.size): f for f in base.files} if base is not None else {}
    cipher = Cipher(keys.ring, KEY_NAME)
    entries = []
    for store, directory in checkpoints.items():
        for path in sorted(p for p in directory.iterdir() if p.is_file()):
            size, sha = path.stat().st_size, _sha256_file(path)
            have = held.get((sha, size))
            if have is not None and target.exists(have.object_key):
                entries.append(
                    FileEntry(
                        store,
                        path.name,
                        size,
                        sha,
                        have.stored_size,
                        have.stored_sha256,
                        have.backup,
                        have.object_key,
                    )
                )
                continue
            stream = _Hashing(sealed_chunks(path, sha, cipher))
            key = f"{backup_id}/{store}/{path.name}"
            target.put_stream(key, stream)
            entries.append(
                FileEntry(store, path.name, size, sha, stream.size, stream.digest.hexdigest(), backup_id, key)
            )
    manifest = Manifest(
        id=backup_id,
        created_ms=now_ms,
        base=base.id if base is not None else None,
        stores=tuple(checkpoints),
        files=tuple(entries),
        ring_id=rid,
        keyring_salt=keys.salt,
        keyring_wrapped=keys.wrapped,
        master=master,
    )
    raw = encode_manifest(manifest, keys.root_key)
    target.put(f"{backup_id}/{MANIFEST}", raw)
    return replace(manifest, digest=hashlib.sha256(raw).hexdigest())


# --- restoring ----------------------------------------------------------------------------


def fetch_verified(target: ObjectStore, manifest: Manifest, ring: Keyring, scratch: Path) -> dict[str, Path]:
    """Every file of the backup, checked (stored hash, then plaintext hash) and decrypted into
    ``scratch/<store>/``. Raises BackupCorrupt naming the first bad file; the live stores are
    not touched either way."""
    cipher = Cipher(ring, KEY_NAME)
    if scratch.exists():
        shutil.rmtree(scratch)
    out = {}
    for store in manifest.stores:
        if not valid_backup_id(store):
            raise BackupCorrupt(f"backup {manifest.id}: bad store name {store!r}")
        out[store] = scratch / store
        out[store].mkdir(parents=True)
    for entry in manifest.files:
        if entry.store not in out or "/" in entry.name or entry.name in ("", ".", ".."):
            raise BackupCorrupt(f"backup {manifest.id}: bad file entry {entry.store}/{entry.name}")
        where = f"backup {manifest.id}: {entry.object_key}"
        try:
            # One byte past the size the manifest gives: a swollen object is refused, not read.
            data = target.get_range(entry.object_key, 0, entry.stored_size + 1)
        except ObjectMissing:
            raise BackupCorrupt(f"{where} is missing") from None
        if len(data) != entry.stored_size or hashlib.sha256(data).hexdigest() != entry.stored_sha256:
            raise BackupCorrupt(
                f"{where}: stored object does not match the manifest "
                f"({len(data)} bytes, expected {entry.stored_size}; sha256 differs)"
            )
        digest, size = hashlib.sha256(), 0
        with (out[entry.store] / entry.name).open("wb") as f:
            for block in open_object(data, entry.sha256, cipher, where):
                digest.update(block)
                size += len(block)
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
        if size != entry.size or digest.hexdigest() != entry.sha256:
            raise BackupCorrupt(f"{where}: content hash does not match the manifest")
    return out


def _open_read_only(path: Path, spaces: Sequence[str]) -> Rdict:
    if not (path / "CURRENT").exists():
        raise BackupCorrupt(f"{path.name}: the backup's checkpoint has no CURRENT file")
    return Rdict(
        str(path),
        Options(raw_mode=True),
        column_families={s: Options(raw_mode=True) for s in spaces},
        access_type=AccessType.read_only(),
    )


def check_openable(checkpoints: dict[str, Path], sources: Sequence[StoreSource]) -> None:
    """Open each restored checkpoint read-only once: a backup RocksDB cannot open is refused
    before the live stores are touched."""
    for source in sources:
        path = checkpoints.get(source.name)
        if path is None:
            raise BackupCorrupt(f"the backup has no {source.name!r} store")
        try:
            db = _open_read_only(path, source.spaces)
        except BackupCorrupt:
            raise
        except Exception as e:
            raise BackupCorrupt(f"the backup's {source.name} store does not open: {e}") from None
        db.close()


def replace_contents(source: StoreSource, checkpoint_dir: Path) -> int:
    """Make the live store hold exactly the checkpoint's key-values (raw: still encrypted),
    except the ``keep`` keys, which stay as they are. Returns the keys copied."""
    db = _open_read_only(checkpoint_dir, source.spaces)
    copied = 0
    try:
        for space in source.spaces:
            kept = {key for sp, key in source.keep if sp == space}
            doomed: list[Write] = []
            for key, _ in source.kv.scan(space, b""):
                if key not in kept:
                    doomed.append((space, key, None))
                if len(doomed) >= _COPY_BATCH:
                    source.kv.write(doomed, sync=False)
                    doomed = []
            source.kv.write(doomed, sync=False)
            cf = db.get_column_family(space)
            batch: list[Write] = []
            for item_key, item_value in cf.items():
                assert isinstance(item_key, bytes) and isinstance(item_value, bytes)
                if item_key in kept:
                    continue
                batch.append((space, item_key, item_value))
                copied += 1
                if len(batch) >= _COPY_BATCH:
                    source.kv.write(batch, sync=False)
                    batch = []
            source.kv.write(batch, sync=True)
            del cf
    finally:
        db.close()
    return copied
