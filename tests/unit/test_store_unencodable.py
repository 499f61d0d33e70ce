"""A command holding a value the store cannot encode is refused alone: the batch it shared
with other commands is applied, and its caller gets an answer (it used to get none)."""

from __future__ import annotations

import asyncio

import pytest

from kiok.errors import InvalidInput
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader

DAG = {"dag": {"id": "d"}, "tasks": [{"id": "t", "type": "shell", "script": "true"}]}


async def test_an_unencodable_command_fails_alone_in_its_batch() -> None:
    kv = MemoryKV(keys.SPACES)
    log = LocalCommandLog(kv)
    await log.propose(c.RegisterDag(at_ms=1, spec=DAG, source="x"))
    bad = log.propose_nowait(c.SetDagPaused(at_ms=2, dag_id="d", paused=True))
    # the same turn: one batch. The store cannot encode an integer of 30 digits.
    huge = log.propose_nowait(c.RegisterDag(at_ms=2, spec={**DAG, "x": 10**30}, source="x"))
    good = log.propose_nowait(c.SetDagPaused(at_ms=3, dag_id="d", paused=False))
    await bad
    with pytest.raises(InvalidInput, match="cannot be stored"):
        await asyncio.wait_for(huge, 5)
    await asyncio.wait_for(good, 5)
    dag = StateReader(kv).dag("d")
    assert dag is not None and dag["paused"] is False
