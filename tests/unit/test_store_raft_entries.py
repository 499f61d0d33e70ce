"""How proposals become Raft entries (``kiok.store.replicated._entries``): commands of one
turn share an entry while it stays under the limit, else they go in several, in order; no
entry is ever over the limit; a large command travels compressed; a command over the limit
even so is refused alone with PayloadTooLarge and the others go on."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
from pysyncobj import pickle  # type: ignore[import-untyped]

from kiok.errors import InvalidInput, PayloadTooLarge
from kiok.store import commands as c
from kiok.store.replicated import _MESSAGE_BYTES, _NONCE, ENTRY_BYTES, _decode, _entries

Batch = list[tuple[c.Command, asyncio.Future[Any]]]


def _log(n: int, size: int) -> c.AppendLogs:
    return c.AppendLogs(at_ms=n, chunks=[["r", f"t{n}", b"x" * size]])


async def test_one_turn_is_one_entry_while_it_fits() -> None:
    loop = asyncio.get_running_loop()
    batch: Batch = [(_log(i, 100), loop.create_future()) for i in range(5)]
    [(entry, body)] = _entries(batch, 10_000)
    assert entry == batch and _decode(body) == ([cmd for cmd, _ in batch], None)


async def test_a_turn_over_the_limit_is_split_in_order_and_a_command_over_it_is_refused() -> None:
    loop = asyncio.get_running_loop()
    cmds: list[c.Command] = [_log(i, 3000) for i in range(7)]
    cmds.insert(3, _log(99, 20_000))  # alone over the limit
    cmds.insert(5, c.RegisterDag(at_ms=1, spec={"x": 10**30}))  # msgpack cannot encode it
    batch: Batch = [(cmd, loop.create_future()) for cmd in cmds]
    entries = _entries(batch, 10_000)
    assert len(entries) == 3
    assert all(len(body) <= 10_000 for _, body in entries)
    sent = [cmd for _, body in entries for cmd in _decode(body)[0]]
    assert sent == [cmd for cmd in cmds if cmd not in (cmds[3], cmds[5])]
    assert [cmd for entry, _ in entries for cmd, _ in entry] == sent
    with pytest.raises(PayloadTooLarge, match=r"one entry of the replicated log holds at most 0\.0 MiB"):
        batch[3][1].result()
    with pytest.raises(InvalidInput, match="cannot be stored"):
        batch[5][1].result()


async def test_a_large_command_travels_compressed_and_comes_back_equal() -> None:
    """A DAG registration of 50,000 tasks (~3 MiB encoded: over the limit as it is) fits in
    one entry compressed, and is applied exactly as proposed."""
    loop = asyncio.get_running_loop()
    tasks = [
        {"id": f"t{i}", "script": f"echo step {i}", "requires": [f"t{i - 1}"] if i else []}
        for i in range(50_000)
    ]
    big = c.RegisterDag(at_ms=1, spec={"id": "big", "tasks": tasks}, source="dag: {id: big}\n" * 20_000)
    plain = len(msgpack.packb(big.to_wire(), use_bin_type=True))
    assert plain > ENTRY_BYTES
    small = _log(1, 10)
    batch: Batch = [(small, loop.create_future()), (big, loop.create_future())]
    [(entry, body)] = _entries(batch, ENTRY_BYTES)
    assert entry == batch and len(body) < plain / 5
    assert _decode(body) == ([small, big], None)
    assert not batch[1][1].done()  # not refused


def test_the_limit_keeps_every_entry_off_pysyncobjs_split_path() -> None:
    """PySyncObj splits (and truncates) an entry whose pickled command reaches
    appendEntriesBatchSizeBytes; a body at the limit made of the worst bytes stays under."""
    payload = b"\xff" * (_NONCE + ENTRY_BYTES + 16)  # nonce + ciphertext + GCM tag
    assert len(pickle.dumps((0, (payload,), {}))) + 1 < _MESSAGE_BYTES


async def test_an_entry_carries_the_lead_it_was_proposed_under() -> None:
    loop = asyncio.get_running_loop()
    batch: Batch = [(_log(i, 100), loop.create_future()) for i in range(3)]
    lead = ("m" * 128, 2**40)
    [(_, body)] = _entries(batch, 10_000, lead)
    assert _decode(body) == ([cmd for cmd, _ in batch], lead)
