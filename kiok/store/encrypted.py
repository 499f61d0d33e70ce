"""``EncryptedKV``: a ``KVStore`` whose values are encrypted at rest, per keyspace.

Each encrypted keyspace has its data key (``kiok.security.kms``); the keyspace and key are
bound to each value as associated data, so a value copied under another key does not
decrypt. Keyspaces without a cipher (``kms``, which holds the root-wrapped keyring) pass
through. Until ``set_keyring`` is called, writes to encrypted keyspaces are refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from kiok.errors import KiokError
from kiok.security.kms import Cipher, Keyring
from kiok.store.kv import KVStore, Write


class EncryptedKV:
    def __init__(self, inner: KVStore, key_names: Mapping[str, str]) -> None:
        """``key_names``: keyspace -> name of the data key that encrypts it."""
        self._inner = inner
        self._key_names = dict(key_names)
        self._ciphers: dict[str, Cipher] = {}

    def set_keyring(self, ring: Keyring) -> None:
        self._ciphers = {space: Cipher(ring, name) for space, name in self._key_names.items()}

    def _cipher(self, space: str) -> Cipher | None:
        if space not in self._key_names:
            return None
        cipher = self._ciphers.get(space)
        if cipher is None:
            raise KiokError(f"keyspace {space!r} used before the keyring was loaded")
        return cipher

    def get(self, space: str, key: bytes) -> bytes | None:
        raw = self._inner.get(space, key)
        cipher = self._cipher(space)
        if raw is None or cipher is None:
            return raw
        return cipher.decrypt(raw, space.encode() + b"\x00" + key)

    def scan(
        self, space: str, prefix: bytes, *, after: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        cipher = self._cipher(space)
        for key, raw in self._inner.scan(space, prefix, after=after, reverse=reverse):
            yield key, raw if cipher is None else cipher.decrypt(raw, space.encode() + b"\x00" + key)

    def get_sealed(self, space: str, key: bytes) -> bytes | None:
        """``get`` without decrypting (see ``scan_sealed``)."""
        return self._inner.get(space, key)

    def scan_sealed(
        self, space: str, prefix: bytes, *, after: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """``scan`` without decrypting: the values as stored. Every write encrypts with a
        fresh nonce, so equal stored bytes mean an unchanged value; ``open`` decrypts one."""
        return self._inner.scan(space, prefix, after=after, reverse=reverse)

    def open(self, space: str, key: bytes, sealed: bytes) -> bytes:
        """The value of stored bytes ``sealed`` that ``scan_sealed`` gave for ``key``."""
        cipher = self._cipher(space)
        return sealed if cipher is None else cipher.decrypt(sealed, space.encode() + b"\x00" + key)

    def write(self, writes: Sequence[Write], *, sync: bool) -> None:
        out: list[Write] = []
        for space, key, value in writes:
            cipher = self._cipher(space)
            if value is not None and cipher is not None:
                value = cipher.encrypt(value, space.encode() + b"\x00" + key)
            out.append((space, key, value))
        self._inner.write(out, sync=sync)

    def close(self) -> None:
        self._inner.close()
