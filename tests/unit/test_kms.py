"""Envelope encryption: keyring wrap/unwrap, wrong root key, rotation keeps old data readable,
values bound to their key."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag

from kiok.security.kms import Cipher, Keyring, WrongMasterKey, derive_root_key
from kiok.store.encrypted import EncryptedKV
from kiok.store.kv import MemoryKV

ROOT = derive_root_key("x" * 32, b"salt-salt-salt-!", 1000)


def test_keyring_round_trip_and_wrong_key() -> None:
    ring = Keyring.generate()
    blob = ring.wrap(ROOT)
    assert Keyring.unwrap(blob, ROOT) == ring
    with pytest.raises(WrongMasterKey, match="does not match"):
        Keyring.unwrap(blob, derive_root_key("y" * 32, b"salt-salt-salt-!", 1000))
    with pytest.raises(WrongMasterKey, match="32"):
        derive_root_key("short", b"s", 1000)


def test_rotation_adds_a_version_and_old_values_still_decrypt() -> None:
    ring = Keyring.generate()
    old = Cipher(ring, "metadata-encryption").encrypt(b"before", b"k")
    rotated = ring.rotated("metadata-encryption")
    assert rotated.current["metadata-encryption"] == 2
    new_cipher = Cipher(rotated, "metadata-encryption")
    assert new_cipher.decrypt(old, b"k") == b"before"
    assert new_cipher.decrypt(new_cipher.encrypt(b"after", b"k"), b"k") == b"after"
    with pytest.raises(InvalidTag):
        new_cipher.decrypt(old, b"another-key")  # a value moved under another key does not decrypt


def test_encrypted_kv_stores_no_plaintext() -> None:
    inner = MemoryKV(["meta", "kms"])
    kv = EncryptedKV(inner, {"meta": "metadata-encryption"})
    kv.set_keyring(Keyring.generate())
    kv.write([("meta", b"a", b"secret-value"), ("kms", b"b", b"wrapped-already")], sync=True)
    assert kv.get("meta", b"a") == b"secret-value"
    assert list(kv.scan("meta", b"")) == [(b"a", b"secret-value")]
    assert b"secret-value" not in (inner.get("meta", b"a") or b"")
    assert inner.get("kms", b"b") == b"wrapped-already"
