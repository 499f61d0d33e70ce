"""Opening the state and job-log stores encrypted: find or create the keyring, refuse a wrong
master key before anything is written, hand the data keys to the ``EncryptedKV`` layers."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import msgpack

from kiok.security.kms import Keyring, derive_root_key
from kiok.store import keys as k
from kiok.store.kv import RocksKV

log = logging.getLogger(__name__)


def master_key(configured: str, data_dir: Path) -> str:
    """``KIOK_MASTER_KEY``, or the generated key file of a single-node setup."""
    if configured:
        return configured
    path = data_dir / "master.key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(36)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    log.warning(
        "KIOK_MASTER_KEY is not set: generated %s (mode 0600). Anyone who can read it can decrypt "
        "this data directory; set KIOK_MASTER_KEY and keep it elsewhere for production.",
        path,
    )
    return key


def existing_keyring(state_path: Path, passphrase: str, iterations: int) -> tuple[Keyring, bytes] | None:
    """The store's keyring, unwrapped with ``passphrase`` (WrongMasterKey if it does not
    fit), and the root key; None for a store that has none yet. Reads without writing."""
    found = RocksKV.peek(state_path, k.SPACES, k.KMS, [k.KEYRING.encode(), k.KEYRING_SALT.encode()])
    wrapped, salt = found.get(k.KEYRING.encode()), found.get(k.KEYRING_SALT.encode())
    if wrapped is None or salt is None:
        return None
    root = derive_root_key(passphrase, msgpack.unpackb(salt), iterations)
    return Keyring.unwrap(msgpack.unpackb(wrapped), root), root


def new_keyring(passphrase: str, iterations: int) -> tuple[Keyring, bytes, bytes, bytes]:
    """A fresh keyring, its salt, its root-wrapped form (for ``InstallKeyring``) and the root key."""
    salt = os.urandom(16)
    ring = Keyring.generate()
    root = derive_root_key(passphrase, salt, iterations)
    return ring, salt, ring.wrap(root), root
