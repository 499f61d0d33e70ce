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
        """Keys with ``prefix`` in order, merging uncommitted writes over the store. Stored
        values are read and decoded as the caller goes: one that stops early (the oldest
        audit records) reads no more (it had decoded the whole prefix first). The writes
        merged are those made before the scan began."""
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
        shown = sorted(((k, v) for k, v in pending.items() if v is not _DELETED), reverse=reverse)
        i = 0
        for k, raw in self._kv.scan(space, p, reverse=reverse):
            if k in pending:
                continue
            while i < len(shown) and (shown[i][0] > k if reverse else shown[i][0] < k):
                yield shown[i]
                i += 1
            yield k, decode(raw)
        yield from shown[i:]

    def writes(self) -> list[Write]:
        return [(s, k, None if v is _DELETED else encode(v)) for (s, k), v in self._writes.items()]


def _b(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key
