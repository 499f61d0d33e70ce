"""An entry a leader proposed takes effect only under that same lead (found by the failover
probe: a leader frozen with a forwarded trigger in its socket woke still believing it led,
took the request, and PySyncObj handed the queued command to the new leader, which committed
it long after a follower had answered the client 503 and the client had sent it again: a
second run). Applied here as every master applies a committed entry, over real RocksDB."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kiok.dag.load import spec_from_yaml
from kiok.errors import NotLeader
from kiok.store import commands as c
from kiok.store import keys as k
from kiok.store.joblog import SPACES as JOBLOG_SPACES
from kiok.store.joblog import JobLogStore
from kiok.store.kv import RocksKV
from kiok.store.reader import StateReader
from kiok.store.replicated import (
    _AAD,
    _NONCE,
    NOT_LEADING,
    REQUEST_LEAD,
    Lead,
    RaftCommandLog,
    RaftConfig,
    ReplicatedStores,
    _decode,
    _entries,
)


def _log(tmp_path: Path) -> RaftCommandLog:
    state = RocksKV(tmp_path / "state", k.SPACES)
    joblog_raw = RocksKV(tmp_path / "joblog", JOBLOG_SPACES)
    stores = ReplicatedStores(state, state, JobLogStore(joblog_raw), joblog_raw)
    config = RaftConfig("m1", {"m1": "127.0.0.1:1", "m2": "127.0.0.1:2"}, tmp_path / "raft", "k" * 40)
    return RaftCommandLog(
        stores, config, on_applied=lambda fx: None, on_restored=lambda: None, on_role_change=lambda: None
    )


async def _entry(log: RaftCommandLog, cmd: c.Command, lead: Lead | None) -> bytes:
    [(_, body)] = _entries([(cmd, asyncio.get_running_loop().create_future())], 1 << 20, lead)
    nonce = os.urandom(_NONCE)
    return nonce + log._aead.encrypt(nonce, body, _AAD)


def _dag(dag_id: str) -> c.Command:
    spec = spec_from_yaml(f"dag: {{id: {dag_id}}}\ntasks: [{{id: t, script: 'true'}}]\n")
    return c.RegisterDag(at_ms=1, spec=spec.to_dict(), source="")


async def test_an_entry_proposed_under_a_lead_that_has_passed_changes_nothing(tmp_path: Path) -> None:
    log = _log(tmp_path)
    index = iter(range(1, 100))

    def apply(payload: bytes) -> Any:
        return log._apply_entry_now(payload, next(index))

    apply(await _entry(log, c.leader_elected(1, "m3", 5), None))
    assert apply(await _entry(log, _dag("under_its_lead"), ("m3", 5)))[0][1] is None  # applied
    apply(await _entry(log, c.leader_elected(2, "m2", 6), None))  # m3 froze; m2 leads now
    [(outcome, error)] = apply(await _entry(log, _dag("after_it"), ("m3", 5)))  # m3 woke with it
    assert outcome is None and isinstance(error, NotLeader), error
    assert "lost the lead before it was stored" in error.message
    assert apply(await _entry(log, _dag("under_the_new_lead"), ("m2", 6)))[0][1] is None
    assert apply(await _entry(log, _dag("from_a_follower"), None))[0][1] is None  # its address, say
    reader = StateReader(log._state)
    assert {
        d for d in ("under_its_lead", "after_it", "under_the_new_lead", "from_a_follower") if reader.dag(d)
    } == {
        "under_its_lead",
        "under_the_new_lead",
        "from_a_follower",
    }
    assert log.applied_index() == 6  # the refused entry is applied as nothing, alike everywhere


async def test_every_entry_carries_the_lead_its_master_last_saw(tmp_path: Path) -> None:
    """Found by the failover probe after the first fix: an ex-leader woken from a freeze that
    had already stepped down proposed the request it took with no lead (only a leader tagged
    its entries), and the next leader committed it: a user deleted meanwhile came back. Now
    whoever proposes, the entry carries the last lead that master saw; a ``LeaderElected``
    none (it is what moves the lead on)."""
    log = _log(tmp_path)
    log._apply_entry_now(await _entry(log, c.leader_elected(1, "m3", 5), None), 1)
    sent: list[bytes] = []
    log._replica = SimpleNamespace()  # type: ignore[assignment]  # as if started: what would be proposed is kept
    log._propose_entry = lambda futures, body: sent.append(body)  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    log._send([(_dag("any"), loop.create_future())])
    log._send([(c.leader_elected(2, "m2", 6), loop.create_future())])
    assert [_decode(body)[1] for body in sent] == [("m3", 5), None]


async def test_a_request_s_writes_carry_the_lead_it_was_taken_under(tmp_path: Path) -> None:
    """Found by the failover re-probe: a request that waited (a password hashed for a new user)
    was proposed after its master, woken from a freeze, had caught up with the next leader's
    ``LeaderElected``: it carried that lead and took effect. A request's writes carry the lead
    it was taken under; one taken while its master does not lead by its own record is
    refused at once."""
    log = _log(tmp_path)
    log._apply_entry_now(await _entry(log, c.leader_elected(1, "m1", 5), None), 1)
    log._apply_entry_now(await _entry(log, c.leader_elected(2, "m2", 6), None), 2)  # caught up
    sent: list[bytes] = []
    log._replica = SimpleNamespace()  # type: ignore[assignment]  # as if started: kept instead
    log._propose_entry = lambda futures, body: sent.append(body)  # type: ignore[method-assign]

    async def request(taken: Lead) -> asyncio.Future[Any]:
        REQUEST_LEAD.set(taken)
        return log.propose_nowait(_dag("made_in_a_request"))

    taken_as_leader = await asyncio.create_task(request(("m1", 5)))
    refused = await asyncio.create_task(request(NOT_LEADING))
    background = log.propose_nowait(_dag("made_by_a_loop"))
    await asyncio.sleep(0)  # the turn's batch is sent
    assert [_decode(body)[1] for body in sent] == [("m1", 5), ("m2", 6)]
    assert not taken_as_leader.done() and not background.done()
    with pytest.raises(NotLeader, match="no longer leads"):
        refused.result()
