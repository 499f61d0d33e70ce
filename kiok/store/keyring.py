"""Opening the state and job-log stores encrypted: find or create the keyring, refuse a wrong
master key before anything is written, hand the data keys to the ``EncryptedKV`` layers."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import msgpack

from kiok.errors import InvalidInput
from kiok.security.kms import MIN_MASTER_KEY_CHARS, Keyring, WrongMasterKey, derive_root_key
from kiok.store import keys as k
from kiok.store.kv import RocksKV
from kiok.text_file import read_line

log = logging.getLogger(__name__)


def configured_master_key(value: str, key_file: str) -> str:
    """The master key the operator gave: ``kiok.master.key`` (``KIOK_MASTER_KEY``) or the
    content of ``kiok.kms.master.key.file``, which must be readable by its owner only (a key
    in the environment stays readable in ``/proc/<pid>/environ`` by kiok's user for the
    process's life; a file is read once and can be kept elsewhere). Empty when neither is
    set; ``InvalidInput`` with one line for both, or for a file that is unfit."""
    if not key_file:
        return value
    if value:
        raise InvalidInput("set either KIOK_MASTER_KEY or kiok.kms.master.key.file, not both")
    key = read_line(key_file, "kiok.kms.master.key.file", owner_only=True)
    if not key:
        raise InvalidInput(f"kiok.kms.master.key.file {key_file} is empty")
    return key


def operator_master_key(value: str, key_file: str, *, several_masters: bool) -> str:
    """``configured_master_key``, refusing in one line what no start accepts on the settings
    alone: no key for several masters (each would generate its own), or one too short. Run
    by the master at start and by ``kiok config show`` (``kiok.roots.preflight``)."""
    configured = configured_master_key(value, key_file)
    if several_masters and not configured:
        raise InvalidInput(
            "several masters (kiok.master.peers) share one master key: set "
            "kiok.kms.master.key.file (or KIOK_MASTER_KEY) on each"
        )
    if configured:
        refuse_short_master_key(configured, key_source(value, key_file, Path()))
    return configured


def refuse_short_master_key(key: str, source: str) -> None:
    """Refused naming where the key came from (a later derivation would not know)."""
    if len(key) < MIN_MASTER_KEY_CHARS:
        raise WrongMasterKey(
            f"{source}: the master key must have at least {MIN_MASTER_KEY_CHARS} characters, not {len(key)}"
        )


def key_source(value: str, key_file: str, data_dir: Path) -> str:
    """Where the master key comes from, as messages about it name it: the variable, the key
    file, or the key file kiok generated in the data directory."""
    if key_file:
        return f"the master key in kiok.kms.master.key.file {key_file}"
    if value:
        return "KIOK_MASTER_KEY (kiok.master.key)"
    return f"the generated master key file {data_dir / 'master.key'}"


def master_key(configured: str, data_dir: Path) -> str:
    """``KIOK_MASTER_KEY``, or the generated key file of a single-node setup. ``InvalidInput``
    in one line for a generated key file that cannot be read, is not text or is empty."""
    if configured:
        return configured
    path = data_dir / "master.key"
    if path.exists():
        key = read_line(path, "the generated master key file")
        if not key:
            raise InvalidInput(f"the generated master key file {path} is empty")
        return key
    key = secrets.token_urlsafe(36)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    log.warning(
        "KIOK_MASTER_KEY is not set (nor kiok.kms.master.key.file): generated %s (mode 0600). "
        "Anyone who can read it can decrypt this data directory; for production keep the key "
        "elsewhere (kiok.kms.master.key.file).",
        path,
    )
    return key


def existing_keyring(
    state_path: Path, passphrase: str, iterations: int, source: str = "KIOK_MASTER_KEY"
) -> tuple[Keyring, bytes] | None:
    """The store's keyring, unwrapped with ``passphrase`` (WrongMasterKey naming ``source``,
    where the passphrase came from, if it does not fit), and the root key; None for a store
    that has none yet. Reads without writing."""
    found = RocksKV.peek(state_path, k.SPACES, k.KMS, [k.KEYRING.encode(), k.KEYRING_SALT.encode()])
    wrapped, salt = found.get(k.KEYRING.encode()), found.get(k.KEYRING_SALT.encode())
    if wrapped is None or salt is None:
        return None
    root = derive_root_key(passphrase, msgpack.unpackb(salt), iterations, source)
    return Keyring.unwrap(msgpack.unpackb(wrapped), root, source), root


def new_keyring(passphrase: str, iterations: int) -> tuple[Keyring, bytes, bytes, bytes]:
    """A fresh keyring, its salt, its root-wrapped form (for ``InstallKeyring``) and the root key."""
    salt = os.urandom(16)
    ring = Keyring.generate()
    root = derive_root_key(passphrase, salt, iterations)
    return ring, salt, ring.wrap(root), root
