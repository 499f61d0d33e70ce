"""A key rotation never undoes another one.

A rotation wrote the whole keyring, made from the master's copy of it. Two rotations proposed
before either was applied (two requests at once, or two masters) each dropped the other's
new version: the second one "answered version 2" and left none, and whatever the first one's
version had encrypted meanwhile never decrypted again, on every master. Now a rotation names
the stored keyring it was made from and is refused over another (then made again over it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import msgpack
import pytest

from kiok.errors import Conflict
from kiok.security.kms import DATA_KEYS, Keyring, keyring_digest
from kiok.store import commands as c
from kiok.store import keys as k
from kiok.store.commandlog import apply_batch
from kiok.store.encrypted import EncryptedKV
from kiok.store.keyring import new_keyring
from kiok.store.kv import RocksKV
from kiok.testing.process import Standalone


def test_a_rotation_made_from_a_keyring_another_rotation_replaced_is_refused(tmp_path: Path) -> None:
    """The order Raft may apply two masters' rotations in: A, a write under A's new version, then
    B made from the keyring before A."""
    raw = RocksKV(tmp_path / "state", k.SPACES)
    kv = EncryptedKV(raw, k.ENCRYPTION_KEYS)
    ring, salt, wrapped, root = new_keyring("z" * 40, 1000)

    def stored() -> bytes:
        blob = msgpack.unpackb(raw.get(k.KMS, k.KEYRING.encode()))
        assert isinstance(blob, bytes)
        return blob

    def apply(cmd: c.Command) -> BaseException | None:
        """As a master applies a committed entry: the batch, then the keyring it installed."""
        applied = apply_batch(kv, [cmd])
        kv.write(applied.writes, sync=True)
        if applied.effects.keyring_changed:
            kv.set_keyring(Keyring.unwrap(stored(), root))
        return applied.outcomes[0][1]

    assert apply(c.InstallKeyring(at_ms=1, salt=salt, wrapped=wrapped)) is None
    base = keyring_digest(stored())
    a, b = ring.rotated("metadata-encryption"), ring.rotated("connection-encryption")
    assert (
        apply(c.RotateKey(at_ms=2, key="metadata-encryption", version=2, wrapped=a.wrap(root), base=base))
        is None
    )
    assert apply(c.PutGroup(at_ms=3, name="ops")) is None  # encrypted under metadata v2
    refused = apply(
        c.RotateKey(at_ms=4, key="connection-encryption", version=2, wrapped=b.wrap(root), base=base)
    )
    assert isinstance(refused, Conflict)
    assert kv.get(k.IAM, k.group("ops").encode()) is not None  # still decrypts
    assert Keyring.unwrap(stored(), root).current == {**ring.current, "metadata-encryption": 2}
    raw.close()


@pytest.mark.slow
def test_rotations_asked_for_at_once_each_add_a_version(tmp_path: Path) -> None:
    node = Standalone(tmp_path / "kiok", {})
    node.start()
    try:

        async def burst() -> list[httpx.Response]:
            headers = {"Authorization": f"Bearer {node.token}"}
            async with httpx.AsyncClient(base_url=node.url, headers=headers, timeout=30) as client:
                asks = [
                    client.post("/api/v1/admin/kms/rotate", json={"key": n})
                    for n in DATA_KEYS
                    for _ in range(3)
                ]
                return list(await asyncio.gather(*asks))

        answers = [r for _ in range(3) for r in asyncio.run(burst())]
        assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
        keys = {e["key"]: e for e in node.api("GET", "/api/v1/admin/kms").json()["keys"]}
        for name in DATA_KEYS:
            given = sorted(r.json()["version"] for r in answers if r.json()["key"] == name)
            assert given == list(range(2, 2 + 9)), (name, given)  # each answer its own version
            assert keys[name]["versions"] == 10, keys[name]
    finally:
        node.stop()
