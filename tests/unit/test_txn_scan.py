"""``Txn.scan``: the store's keys merged with the writes of a transaction and its parents, in
order, read lazily (a caller that stops early, as the audit retention does, decodes no more)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kiok.store import keys
from kiok.store.kv import MemoryKV
from kiok.store.txn import Txn, encode

SPACE = keys.SPACES[0]
KEYS = st.sampled_from([f"p/{i:02d}".encode() for i in range(12)] + [b"q/1"])
WRITES = st.lists(st.tuples(KEYS, st.one_of(st.none(), st.integers(0, 9))), max_size=12)


@given(
    stored=st.dictionaries(KEYS, st.integers(0, 9), max_size=12),
    outer=WRITES,
    inner=WRITES,
    reverse=st.booleans(),
)
def test_a_scan_is_the_store_with_the_writes_over_it_in_order(
    stored: dict[bytes, int],
    outer: list[tuple[bytes, int | None]],
    inner: list[tuple[bytes, int | None]],
    reverse: bool,
) -> None:
    kv = MemoryKV(keys.SPACES)
    kv.write([(SPACE, k, encode(v)) for k, v in stored.items()], sync=False)
    parent = Txn(kv)
    child = parent.child()
    expected: dict[bytes, int] = dict(stored)
    for txn, writes in ((parent, outer), (child, inner)):
        for k, v in writes:
            if v is None:
                txn.delete(SPACE, k)
                expected.pop(k, None)
            else:
                txn.put(SPACE, k, v)
                expected[k] = v
    want = sorted(((k, v) for k, v in expected.items() if k.startswith(b"p/")), reverse=reverse)
    assert list(child.scan(SPACE, "p/", reverse=reverse)) == want


def test_a_scan_stopped_early_decodes_no_more() -> None:
    kv = MemoryKV(keys.SPACES)
    kv.write([(SPACE, f"p/{i:04d}".encode(), encode({"n": i})) for i in range(1000)], sync=False)
    read: list[bytes] = []
    scan = kv.scan

    def counted(space: str, prefix: bytes, **kw: object):  # type: ignore[no-untyped-def]
        for k, v in scan(space, prefix, **kw):  # type: ignore[arg-type]
            read.append(k)
            yield k, v

    kv.scan = counted  # type: ignore[method-assign]
    first = next(Txn(kv).scan(SPACE, "p/"))
    assert first == (b"p/0000", {"n": 0}) and len(read) == 1
