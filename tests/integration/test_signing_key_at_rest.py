"""Whoever reads a master's data directory (a disk, a disk snapshot) without the master key
cannot forge a token: the JWT signing key is stored encrypted, not in the plaintext ``kms``
keyspace. A store an older kiok wrote (its key in ``kms``) gets a new, sealed key when its
master starts: the old key, which may have leaked with a copy, signs nothing any more."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgpack
from jwt.warnings import InsecureKeyLengthWarning

from kiok.store import keys as k
from kiok.store.encrypted import EncryptedKV
from kiok.store.keyring import existing_keyring
from kiok.store.kv import RocksKV
from kiok.testing.process import ADMIN_PASSWORD, Standalone

MASTER_KEY = "y" * 40
LEGACY = b"jwt/signing-key"  # where kiok before the sealed key kept it (``kms``, plaintext)
SEALED = b"sys/signing-key"  # (``iam``, encrypted)


def forged(key: bytes) -> str:
    """An admin's access token signed with ``key`` (a guess may be short: it is tried anyway)."""
    now = int(time.time())
    claims = {"sub": "admin", "typ": "access", "pv": 0, "pwc": False, "iat": now, "auth_time": now}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode({**claims, "exp": now + 600}, key, algorithm="HS256")


def users_with(node: Standalone, token: str) -> int:
    r = httpx.get(node.url + "/api/v1/iam/users", headers={"Authorization": f"Bearer {token}"})
    return r.status_code


def raw_values(data: Path) -> Iterator[tuple[str, bytes, bytes]]:
    """Every (keyspace, key, value) of the stopped master's state store, as its files hold
    them: what a disk reader without the master key gets."""
    kv = RocksKV(data / "state", k.SPACES)
    try:
        for space in k.SPACES:
            for key, value in kv.scan(space, b""):
                yield space, key, value
    finally:
        kv.close()


def decrypted(data: Path) -> EncryptedKV:
    found = existing_keyring(data / "state", MASTER_KEY, 200_000)
    assert found is not None
    kv = EncryptedKV(RocksKV(data / "state", k.SPACES), k.ENCRYPTION_KEYS)
    kv.set_keyring(found[0])
    return kv


def candidates(value: bytes) -> list[bytes]:
    """What an attacker would try as a key from one stored value: it, and what it decodes to."""
    out = [value]
    try:
        inner: Any = msgpack.unpackb(value)
    except Exception:
        return out
    return [*out, inner] if isinstance(inner, bytes) else out


def test_a_disk_reader_finds_no_signing_key_and_forges_nothing(standalone_factory: Any) -> None:
    node: Standalone = standalone_factory(env={"KIOK_MASTER_KEY": MASTER_KEY})
    token = node.token
    node.stop()
    assert not (node.data_dir / "master.key").exists()  # the master key is NOT on this disk
    stored = list(raw_values(node.data_dir))
    assert not any(space == k.KMS and key == LEGACY for space, key, _ in stored)
    kv = decrypted(node.data_dir)  # (the operator's view, with the master key)
    try:
        signing_key = msgpack.unpackb(kv.get(k.IAM, SEALED))
    finally:
        kv.close()
    jwt.decode(token, signing_key, algorithms=["HS256"])  # it is the key tokens are signed with
    assert not any(signing_key in value for _, _, value in stored)

    node.start()
    kms_guesses = [g for space, _, value in stored if space == k.KMS for g in candidates(value)]
    sealed = [value for space, key, value in stored if key == SEALED]
    for guess in [*kms_guesses, *sealed]:
        assert users_with(node, forged(guess)) == 401
    assert users_with(node, node.token) == 200


def test_a_plaintext_key_from_an_older_kiok_is_replaced_on_start(standalone_factory: Any) -> None:
    node: Standalone = standalone_factory(env={"KIOK_MASTER_KEY": MASTER_KEY})
    node.stop()
    kv = decrypted(node.data_dir)
    try:  # the layout an older kiok left: the key in ``kms``, in plaintext, none sealed
        found = kv.get(k.IAM, SEALED) or kv.get(k.KMS, LEGACY)
        assert found is not None
        old_key = msgpack.unpackb(found)
        kv.write([(k.IAM, SEALED, None), (k.KMS, LEGACY, found)], sync=True)
    finally:
        kv.close()
    old_token = forged(old_key)  # what that kiok issued (or anyone who copied its disk)

    node.start()
    assert users_with(node, old_token) == 401
    assert "tokens issued before no longer work: sign in again" in node.read_log()
    login = httpx.post(node.url + "/api/v1/auth/login", json={"user": "admin", "password": ADMIN_PASSWORD})
    assert login.status_code == 200 and users_with(node, login.json()["accessToken"]) == 200
    node.stop()

    stored = list(raw_values(node.data_dir))
    assert not any(space == k.KMS and key == LEGACY for space, key, _ in stored)
    kv = decrypted(node.data_dir)
    try:
        new_key = msgpack.unpackb(kv.get(k.IAM, SEALED))
    finally:
        kv.close()
    assert isinstance(new_key, bytes) and len(new_key) == 32 and new_key != old_key
    assert not any(new_key in value or old_key in value for _, _, value in stored)
    jwt.decode(login.json()["accessToken"], new_key, algorithms=["HS256"])

    node.start()  # once: the next start seals nothing and the new tokens stay good
    assert users_with(node, login.json()["accessToken"]) == 200
    assert node.read_log().count("sign in again") == 1
