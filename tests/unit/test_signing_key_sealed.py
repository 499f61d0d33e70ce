"""The token signing key is stored encrypted (``iam`` keyspace), never in the plaintext ``kms``
keyspace; a store an older kiok bootstrapped (its key in ``kms``) is sealed once, with a new
key, when its master opens it. In process, on a real RocksDB store with a real keyring."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kiok.config import Settings
from kiok.errors import Unauthenticated
from kiok.master.node import MasterNode
from kiok.security.tokens import TokenClaims
from kiok.store import commands as c
from kiok.store import keys as k
from kiok.store.effects import Effects
from kiok.store.txn import encode

PASSWORD = "Some-Password-1"
LEGACY = b"jwt/signing-key"  # where kiok before the sealed key kept it (``kms``, plaintext)


def now_ms() -> int:
    return int(time.time() * 1000)


@contextlib.asynccontextmanager
async def master(tmp_path: Path) -> AsyncIterator[MasterNode]:
    """A bootstrapped single master (no HTTP, no worker)."""
    settings = Settings.load(
        overrides={"kiok.base.data.dir": str(tmp_path), "kiok.iam.admin.password": PASSWORD}
    )
    node = MasterNode(settings, now_ms)
    await node.bootstrap()
    try:
        yield node
    finally:
        node.kv.close()
        node.joblog.close()


def raw(node: MasterNode, space: str, key: bytes) -> bytes | None:
    """What the store's files hold under ``key``, below the encryption layer."""
    return node.kv.get_sealed(space, key)


def as_legacy(node: MasterNode) -> bytes:
    """Turn the store into one an older kiok bootstrapped: its signing key in ``kms``, in
    plaintext, none sealed. Returns that key."""
    key = node.reader.signing_key()
    assert key is not None
    node.kv.write([(k.IAM, k.SIGNING_KEY.encode(), None), (k.KMS, LEGACY, encode(key))], sync=True)
    node.auth.forget_signing_key()
    return key


def access_token(node: MasterNode) -> str:
    return node.auth.issuer.issue(TokenClaims("admin", "access", 0, False), now_ms())


async def test_bootstrap_stores_the_signing_key_encrypted_and_nothing_in_kms(tmp_path: Path) -> None:
    async with master(tmp_path) as node:
        key = node.reader.signing_key()
        assert isinstance(key, bytes) and len(key) == 32
        assert raw(node, k.KMS, LEGACY) is None
        sealed = raw(node, k.IAM, k.SIGNING_KEY.encode())
        assert sealed is not None and key not in sealed
        for space in k.SPACES:  # not under any other key either
            assert all(key not in value for _, value in node.kv.scan_sealed(space, b""))
        assert not any(record.get("name") == k.SIGNING_KEY for record in node.reader.iam_records("user"))


async def test_a_plaintext_key_is_replaced_by_a_new_sealed_one_and_its_tokens_stop(tmp_path: Path) -> None:
    async with master(tmp_path) as node:
        old_key = as_legacy(node)
        old = access_token(node)  # signed with the legacy key: readers still work before the seal
        assert node.reader.signing_key() == old_key and node.auth.issuer.verify(old, "access", now_ms())

        await node.bootstrap()  # what a master does when it opens the store (start, takeover)

        assert raw(node, k.KMS, LEGACY) is None
        new_key = node.reader.signing_key()
        assert isinstance(new_key, bytes) and len(new_key) == 32 and new_key != old_key
        sealed = raw(node, k.IAM, k.SIGNING_KEY.encode())
        assert sealed is not None and new_key not in sealed and old_key not in sealed
        with pytest.raises(Unauthenticated):  # the cached issuer was dropped as it applied
            node.auth.issuer.verify(old, "access", now_ms())
        pair = await node.auth.login("admin", PASSWORD, "127.0.0.1")
        assert node.auth.issuer.verify(pair.access, "access", now_ms()).user == "admin"


async def test_sealing_applies_once_a_second_command_changes_nothing(tmp_path: Path) -> None:
    async with master(tmp_path) as node:
        as_legacy(node)
        fresh = b"n" * 32
        assert await node.log.propose(c.SealSigningKey(at_ms=now_ms(), signing_key=fresh)) == {"sealed": True}

        def state() -> dict[str, list[tuple[bytes, bytes]]]:
            return {space: list(node.kv.scan(space, b"")) for space in k.SPACES}

        before = state()
        seen: list[Effects] = []
        node.log.subscribe(seen.append)
        replay = c.SealSigningKey(at_ms=now_ms(), signing_key=b"r" * 32)  # a replay, a 2nd leader's
        assert await node.log.propose(replay) == {"sealed": False}
        assert state() == before and node.reader.signing_key() == fresh
        assert seen and not any(fx.signing_key_changed for fx in seen)
        assert await node.auth.seal_signing_key() is False  # nothing proposed: nothing to seal


async def test_a_master_applying_a_seal_from_the_log_drops_the_key_it_cached(tmp_path: Path) -> None:
    """Replicated masters apply on the Raft thread: the cached issuer goes there too, before
    the next entry (and before the proposer hears the outcome)."""
    async with master(tmp_path) as node:
        as_legacy(node)
        old = access_token(node)
        node.kv.write(
            [(k.KMS, LEGACY, None), (k.IAM, k.SIGNING_KEY.encode(), encode(b"s" * 32))], sync=True
        )  # what applying the command wrote, under the cache
        assert node.auth.issuer.verify(old, "access", now_ms())  # still the cached issuer
        node._on_applied_sync(Effects(signing_key_changed=True))
        with pytest.raises(Unauthenticated):
            node.auth.issuer.verify(old, "access", now_ms())
        assert node.reader.signing_key() == b"s" * 32
