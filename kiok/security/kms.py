"""Envelope encryption at rest: a root key from ``KIOK_MASTER_KEY`` wraps named data keys,
and the data keys encrypt every stored value with AES-256-GCM.

    KIOK_MASTER_KEY --PBKDF2-SHA256 (kiok.kms.pbkdf2.iterations, salt)--> root key
    root key --AES-GCM--> key blob (the data keys, every version), kept in the ``kms`` keyspace
    data key <name> v<n> --AES-GCM--> each value: 0x01 | name id | version | nonce | ciphertext

The key blob is the only value encrypted by the root key; opening a store with another
master key fails to unwrap it, so a wrong key is refused before anything is written. A
rotation adds a version and makes it current; values written under older versions still
decrypt. Keys (RocksDB keys: ids) are not encrypted; values are.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kiok.errors import KiokError

DATA_KEYS = ("metadata-encryption", "connection-encryption", "joblog-encryption", "backup-encryption")
_FORMAT = 1
_HEADER = struct.Struct(">BBH")  # format, data key id, version
_NONCE = 12


class WrongMasterKey(KiokError):
    code = "wrong_master_key"


#: The shortest master key accepted.
MIN_MASTER_KEY_CHARS = 32


def derive_root_key(master_key: str, salt: bytes, iterations: int, source: str = "KIOK_MASTER_KEY") -> bytes:
    """The root key ``master_key`` derives with ``salt``; ``source`` names where the key came
    from (the variable, the key file) in the ``WrongMasterKey`` for a key too short."""
    if len(master_key) < MIN_MASTER_KEY_CHARS:
        raise WrongMasterKey(
            f"{source}: the master key must have at least {MIN_MASTER_KEY_CHARS} characters, "
            f"not {len(master_key)}"
        )
    return hashlib.pbkdf2_hmac("sha256", master_key.encode(), salt, iterations, dklen=32)


def keyring_digest(wrapped: bytes) -> str:
    """What names one stored (wrapped) keyring: a rotation says which one it was made from
    (``RotateKey.base``), and is refused over any other."""
    return hashlib.sha256(wrapped).hexdigest()


@dataclass
class Keyring:
    """Every version of every data key; ``current`` is what new writes use."""

    versions: dict[str, dict[int, bytes]] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)

    @classmethod
    def generate(cls) -> Keyring:
        ring = cls()
        for name in DATA_KEYS:
            ring.versions[name] = {1: AESGCM.generate_key(bit_length=256)}
            ring.current[name] = 1
        return ring

    def rotated(self, name: str) -> Keyring:
        if name not in self.versions:
            raise KiokError(f"unknown key {name!r}; one of {', '.join(DATA_KEYS)}")
        versions = {n: dict(v) for n, v in self.versions.items()}
        new = max(versions[name]) + 1
        versions[name][new] = AESGCM.generate_key(bit_length=256)
        return Keyring(versions, {**self.current, name: new})

    def wrap(self, root_key: bytes) -> bytes:
        body = msgpack.packb(
            {
                "v": {n: {str(k): key for k, key in vs.items()} for n, vs in self.versions.items()},
                "c": self.current,
            },
            use_bin_type=True,
        )
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(root_key).encrypt(nonce, body, b"kiok-keyring")

    @classmethod
    def unwrap(cls, blob: bytes, root_key: bytes, source: str = "KIOK_MASTER_KEY") -> Keyring:
        """The keyring wrapped in ``blob``; ``WrongMasterKey`` naming ``source`` (where the
        master key came from) when ``root_key`` does not open it."""
        try:
            body = AESGCM(root_key).decrypt(blob[:_NONCE], blob[_NONCE:], b"kiok-keyring")
        except InvalidTag:
            raise WrongMasterKey(
                f"{source} does not match the key this data directory was created with; nothing was changed"
            ) from None
        doc = msgpack.unpackb(body, raw=False)
        return cls({n: {int(k): key for k, key in vs.items()} for n, vs in doc["v"].items()}, dict(doc["c"]))


def worker_outbox_keyring(ring: Keyring, worker_id: str) -> Keyring:
    """The keys a worker encrypts its outbox with: every version of ``joblog-encryption``
    narrowed to this worker by HMAC, so what a worker is given opens nothing of the master's
    stores nor another worker's outbox. Sent in the WELCOME and held only in the worker's
    memory: the outbox on disk is unreadable without a master."""
    name = "joblog-encryption"
    label = b"kiok-worker-outbox\0" + worker_id.encode()
    derived = {v: hmac.new(key, label, hashlib.sha256).digest() for v, key in ring.versions[name].items()}
    return Keyring({name: derived}, {name: ring.current[name]})


class Cipher:
    """Encrypts and decrypts values with one named data key (all its versions)."""

    def __init__(self, ring: Keyring, name: str) -> None:
        self._id = DATA_KEYS.index(name)
        self._name = name
        self._aead = {v: AESGCM(k) for v, k in ring.versions[name].items()}
        self._current = ring.current[name]

    def encrypt(self, value: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        header = _HEADER.pack(_FORMAT, self._id, self._current)
        return header + nonce + self._aead[self._current].encrypt(nonce, value, header + aad)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < _HEADER.size + _NONCE:
            raise KiokError(f"value not readable with {self._name} (only {len(blob)} bytes)")
        fmt, key_id, version = _HEADER.unpack_from(blob)
        if fmt != _FORMAT or key_id != self._id or version not in self._aead:
            raise KiokError(
                f"value not readable with {self._name} (format {fmt}, key {key_id}, version {version})"
            )
        header = blob[: _HEADER.size]
        nonce = blob[_HEADER.size : _HEADER.size + _NONCE]
        return self._aead[version].decrypt(nonce, blob[_HEADER.size + _NONCE :], header + aad)
