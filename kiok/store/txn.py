"""A write transaction over a ``KVStore``: the only way ``apply()`` touches state.

Reads see the transaction's own earlier writes (so a group of commands applied into one
batch behaves exactly like the same commands applied one by one); writes are kept as
decoded objects and encoded once at commit, so ten reports for one run in one batch cost
one encode and one write. ``child()`` gives a savepoint: a command whose apply raises is
dropped without disturbing the others in its batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack

from kiok.store.kv import KVStore, Write

_DELETED = object()


def encode(value: Any) -> bytes:
    out = msgpack.packb(value, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


def decode(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


class Txn:
    def __init__(self, kv: KVStore, parent: Txn | None = None) -> None:
        self._kv = kv
        self._parent = parent
        self._writes: dict[tuple[str, bytes], Any] = {}

    def child(self) -> Txn:
        return Txn(self._kv, self)

    def merge_into_parent(self) -> None:
        assert self._parent is not None
        self._parent._writes.update(self._writes)

    def _lookup(self, space: str, key: bytes) -> Any:
        txn: Txn | None = self
        while txn is not None:
            if (space, key) in txn._writes:
                return txn._writes[(space, key)]
            txn = txn._parent
        raw = self._kv.get(space, key)
        return _DELETED if raw is None else decode(raw)

    def get(self, space: str, key: str | bytes) -> Any:
        """The value (decoded), or ``None`` when absent."""
        value = self._lookup(space, _b(key))
        return None if value is _DELETED else value

    def put(self, space: str, key: str | bytes, value: Any) -> None:
        self._writes[(space, _b(key))] = value

    def delete(self, space: str, key: str | bytes) -> None:
        self._writes[(space, _b(key))] = _DELETED

    def scan(self, space: str, prefix: str | bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, Any]]:
        """Keys with ``prefix`` in order, merging uncommitted writes over the store."""
        p = _b(prefix)
        pending: dict[bytes, Any] = {}
        chain: list[Txn] = []
        txn: Txn | None = self
        while txn is not None:
            chain.append(txn)
            txn = txn._parent
        for t in reversed(chain):  # outermost first so inner writes win
            for (s, k), v in t._writes.items():
                if s == space and k.startswith(p):
                    pending[k] = v
        merged = {k: decode(v) for k, v in self._kv.scan(space, p, reverse=reverse) if k not in pending}
        merged.update({k: v for k, v in pending.items() if v is not _DELETED})
        for k in sorted(merged, reverse=reverse):
            yield k, merged[k]

    def writes(self) -> list[Write]:
        return [(s, k, None if v is _DELETED else encode(v)) for (s, k), v in self._writes.items()]


def _b(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key
