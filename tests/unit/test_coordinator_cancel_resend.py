"""A cancel (or a run timeout) reaches the run's driver even when it is not connected at the
moment the cancel commits: cut off for a moment and reconnecting with its claim, or driving
under a leader that died right after committing the cancel. Before, the CANCEL went out once,
into a closed connection or from a master that no longer led: the driver kept its run (its
claim still matched the fence) and walked the rest of the graph, running tasks of a run that
had ended CANCELLED, with nothing of it ever committed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from kiok.dag.load import spec_from_yaml
from kiok.master.coordinator import Coordinator
from kiok.protocol.link import WorkerInfo
from kiok.protocol.messages import Assignment, Claim, Fence, OfferReply, OfferVerdict
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader
from tests.worker_handles import NoClaims

DAG = """
dag: {id: d}
tasks:
  - {id: a, type: shell, script: "true"}
  - {id: b, type: shell, script: "true", requires: [a]}
"""


class Handle(NoClaims):
    """A worker connection: what is sent on it once it is closed is lost."""

    def __init__(self, wid: str) -> None:
        self.id = wid
        self.connected = True
        self.offers: list[Assignment] = []
        self.cancels: list[tuple[str, str]] = []

    def info(self) -> WorkerInfo:
        return WorkerInfo(self.id, "-", (), 8, 8, self.connected, False, None)

    async def offer(self, assignment: Assignment, labels: Iterable[str]) -> OfferReply:
        self.offers.append(assignment)
        return OfferReply(OfferVerdict.ACK)

    def cancel(self, run_id: str, reason: str) -> None:
        if self.connected:
            self.cancels.append((run_id, reason))


async def _world() -> tuple[LocalCommandLog, StateReader, str]:
    kv = MemoryKV(keys.SPACES)
    log = LocalCommandLog(kv)
    reader = StateReader(kv)
    await log.propose(c.RegisterDag(at_ms=1, spec=spec_from_yaml(DAG).to_dict()))
    run = (await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"]
    return log, reader, run


def _claim(reader: StateReader, run: str) -> list[Claim]:
    header = reader.run_header(run)
    assert header is not None
    return [Claim(run, Fence(header["term"], header["epoch"]))]


async def _drive_a(log: LocalCommandLog, reader: StateReader, run: str, coord: Coordinator) -> Handle:
    """w1 takes the run and reports task a RUNNING under its fence."""
    w1 = Handle("w1")
    coord.add_worker(w1)
    await coord.dispatch_pass()
    assert [a.run_id for a in w1.offers] == [run]
    running = {"state": "RUNNING", "attempt": 1, "startedAtMs": 10, "worker": "w1"}
    await report(log, reader, run, 10, {"a": running})
    return w1


async def report(
    log: LocalCommandLog, reader: StateReader, run: str, at_ms: int, tasks: dict[str, dict[str, object]]
) -> None:
    """w1 reports ``tasks`` of ``run`` under the run's current fence."""
    header = reader.run_header(run)
    assert header is not None
    await log.propose(
        c.ReportTasks(
            at_ms=at_ms, run_id=run, term=header["term"], epoch=header["epoch"], tasks=tasks, worker="w1"
        )
    )


def _reconnect(coord: Coordinator, reader: StateReader, run: str) -> Handle:
    """Worker w1 connects again, claiming ``run`` (it kept driving it): its new handle."""
    again = Handle("w1")
    assert coord.reattach("w1", _claim(reader, run)) == ()
    coord.add_worker(again)
    return again


async def test_a_cancel_while_the_driver_is_cut_off_is_sent_when_it_reconnects() -> None:
    log, reader, run = await _world()
    coord = Coordinator(log, reader, lambda *a: None, lambda: 1000, term=1)
    log.subscribe(coord.on_effects)
    w1 = await _drive_a(log, reader, run, coord)
    w1.connected = False  # its connection broke: the master keeps its runs for the timeout
    await log.propose(c.CancelRun(at_ms=20, run_id=run, by="alice"))
    assert w1.cancels == []  # said into a closed connection
    again = Handle("w1")
    assert coord.reattach("w1", _claim(reader, run)) == ()  # it still holds the run
    coord.add_worker(again)
    await asyncio.sleep(0)
    assert [r for r, _ in again.cancels] == [run]
    assert "alice" in again.cancels[0][1]


async def test_a_cancel_committed_by_a_leader_that_then_died_reaches_the_driver() -> None:
    log, reader, run = await _world()
    old = Coordinator(log, reader, lambda *a: None, lambda: 1000, term=1)
    log.subscribe(old.on_effects)
    w1 = await _drive_a(log, reader, run, old)
    w1.connected = False  # the leader dies: its connections with it
    await log.propose(c.CancelRun(at_ms=20, run_id=run, by="alice"))
    new = Coordinator(log, reader, lambda *a: None, lambda: 2000, term=2, reattach_grace_ms=5000)
    log.subscribe(new.on_effects)
    again = _reconnect(new, reader, run)
    assert [r for r, _ in again.cancels] == [run]
    header = reader.run_header(run)
    assert header is not None and header["state"] == "RUNNING"  # until the driver reports a


async def test_a_run_timeout_while_the_driver_is_cut_off_is_sent_when_it_reconnects() -> None:
    log, reader, run = await _world()
    coord = Coordinator(log, reader, lambda *a: None, lambda: 1000, term=1)
    log.subscribe(coord.on_effects)
    w1 = await _drive_a(log, reader, run, coord)
    w1.connected = False
    await log.propose(c.FailRun(at_ms=20, run_id=run, reason="run timeout (1s) exceeded"))
    again = _reconnect(coord, reader, run)
    assert [r for r, _ in again.cancels] == [run]


async def test_a_driver_reconnecting_to_a_run_not_cancelled_is_told_nothing() -> None:
    log, reader, run = await _world()
    coord = Coordinator(log, reader, lambda *a: None, lambda: 1000, term=1)
    log.subscribe(coord.on_effects)
    w1 = await _drive_a(log, reader, run, coord)
    w1.connected = False
    again = _reconnect(coord, reader, run)
    assert again.cancels == []


async def test_a_cancel_that_ends_the_run_at_once_still_reaches_its_driver() -> None:
    """Nothing was running (task a waits to retry, or for a slot), so the cancel ends the run
    as it commits. The run was dropped from the driven ones before its CANCEL was looked at,
    and the driver, never told, started a's next attempt after its run had ended."""
    log, reader, run = await _world()
    coord = Coordinator(log, reader, lambda *a: None, lambda: 1000, term=1)
    log.subscribe(coord.on_effects)
    w1 = await _drive_a(log, reader, run, coord)
    retrying = {"state": "RETRYING", "attempt": 1, "startedAtMs": 10, "endedAtMs": 11, "retryAtMs": 5000}
    await report(log, reader, run, 11, {"a": retrying})
    await log.propose(c.CancelRun(at_ms=20, run_id=run, by="alice"))
    header = reader.run_header(run)
    assert header is not None and header["state"] == "CANCELLED"
    assert [r for r, _ in w1.cancels] == [run]


class CutOffWhileAccepting(Handle):
    """A connection that breaks once its worker took the offer, before the answer gets back;
    the worker reconnects at once, claiming the run, and the old offer then ends refused."""

    def __init__(self, wid: str, log: LocalCommandLog, reader: StateReader, coord: Coordinator) -> None:
        super().__init__(wid)
        self.world = (log, reader, coord)
        self.again: Handle | None = None

    async def offer(self, assignment: Assignment, labels: Iterable[str]) -> OfferReply:
        self.offers.append(assignment)
        log, reader, coord = self.world
        running = {"state": "RUNNING", "attempt": 1, "startedAtMs": 10, "worker": "w1"}
        await report(log, reader, assignment.run_id, 10, {"a": running})
        self.connected = False
        self.again = _reconnect(coord, reader, assignment.run_id)
        return OfferReply(OfferVerdict.NAK, "connection lost")


async def test_a_driver_that_reconnects_holding_a_run_keeps_it_though_the_old_offer_was_refused() -> None:
    """The old connection's refusal released the run from the driver that had just claimed it
    under its fence: its running task was marked lost and the run offered again, so two
    workers ran the same task."""
    log, reader, run = await _world()
    coord = Coordinator(log, reader, lambda *a: None, lambda: 1000, term=1)
    log.subscribe(coord.on_effects)
    w1 = CutOffWhileAccepting("w1", log, reader, coord)
    coord.add_worker(w1)
    await coord.dispatch_pass()
    await asyncio.sleep(0)
    header = reader.run_header(run)
    assert header is not None and header["worker"] == "w1"
    assert reader.run(run)["tasks"]["a"]["state"] == "RUNNING"  # type: ignore[index]
    await coord.dispatch_pass()
    assert w1.again is not None and w1.again.offers == []  # not offered again
