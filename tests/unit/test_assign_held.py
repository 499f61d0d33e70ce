"""A run's first assignment is refused by ``apply()`` when a pause of its DAG, or maintenance
mode, was committed ahead of it. The leader decided on what it read before: the pause can
commit in the very batch (Raft entry) as the assignment, just ahead of it, and the user who
was told "paused" must not see the run start. Found by the simulator (seed 9 of
``tests/sim/test_user_actions.py``)."""

from __future__ import annotations

import asyncio

import pytest

from kiok.dag.load import spec_from_yaml
from kiok.errors import Conflict
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader

DAG = 'dag: {id: d}\ntasks: [{id: a, script: "true"}]\n'


async def _run(log: LocalCommandLog) -> str:
    await log.propose(c.RegisterDag(at_ms=1, spec=spec_from_yaml(DAG).to_dict()))
    return str((await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"])


@pytest.mark.parametrize(
    "hold",
    [
        c.SetDagPaused(at_ms=3, dag_id="d", paused=True),
        c.SetMaintenance(at_ms=3, enabled=True, by="admin"),
    ],
    ids=["paused", "maintenance"],
)
async def test_a_hold_committed_in_the_same_batch_ahead_of_a_first_assignment_wins(hold: c.Command) -> None:
    kv = MemoryKV(keys.SPACES)
    log, reader = LocalCommandLog(kv), StateReader(kv)
    run_id = await _run(log)
    outcomes: list[object] = await asyncio.gather(
        log.propose(hold),
        log.propose(c.AssignRun(at_ms=4, run_id=run_id, worker="w1", term=1, respect_holds=True)),
        return_exceptions=True,
    )
    held, assigned = outcomes
    assert not isinstance(held, BaseException)
    assert isinstance(assigned, Conflict) and "waits" in assigned.message
    header = reader.run_header(run_id)
    assert header is not None and (header["state"], header["worker"]) == ("PENDING", None)


async def test_a_run_already_running_is_still_reassigned_while_held() -> None:
    """Maintenance and pauses hold pending runs only: a running run whose driver is lost
    is given to another worker whatever they say."""
    kv = MemoryKV(keys.SPACES)
    log, reader = LocalCommandLog(kv), StateReader(kv)
    run_id = await _run(log)
    await log.propose(c.AssignRun(at_ms=4, run_id=run_id, worker="w1", term=1))
    await log.propose(c.SetMaintenance(at_ms=5, enabled=True, by="admin"))
    await log.propose(c.SetDagPaused(at_ms=5, dag_id="d", paused=True))
    await log.propose(c.AssignRun(at_ms=6, run_id=run_id, worker="w2", term=1, respect_holds=True))
    header = reader.run_header(run_id)
    assert header is not None and (header["state"], header["worker"]) == ("RUNNING", "w2")


async def test_an_assignment_logged_before_holds_were_checked_applies_as_it_did() -> None:
    """An entry written by an earlier version (no ``respect_holds``) is applied as that
    version applied it, on every master: a replayed journal or a master upgraded before the
    leader must not diverge from it."""
    kv = MemoryKV(keys.SPACES)
    log, reader = LocalCommandLog(kv), StateReader(kv)
    run_id = await _run(log)
    await log.propose(c.SetDagPaused(at_ms=3, dag_id="d", paused=True))
    await log.propose(c.AssignRun(at_ms=4, run_id=run_id, worker="w1", term=1))
    header = reader.run_header(run_id)
    assert header is not None and (header["state"], header["worker"]) == ("RUNNING", "w1")
