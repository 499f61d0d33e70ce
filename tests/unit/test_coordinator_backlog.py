"""A backlog (runs queued behind ``max_active_runs``, a backfill) costs each dispatch pass
one header read per queued run, not a read and decode of its spec: a pass runs on every
run's end, and reading every queued spec each time made a backlog of 800 runs take 26 s."""

from __future__ import annotations

from typing import Any

from kiok.dag.load import spec_from_yaml
from kiok.master.coordinator import Coordinator
from kiok.master.notify import Notifier, NotifySettings
from kiok.master.run_terms import RunTermsCache
from kiok.protocol.messages import OfferReply, OfferVerdict
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.joblog import SPACES as JOBLOG_SPACES
from kiok.store.joblog import JobLogStore
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader

from .test_coordinator_holding import Worker

DAG = 'dag: {id: d, max_active_runs: 1, sla: 1h}\ntasks:\n  - {id: a, type: shell, script: "true"}\n'
QUEUED = 30


class CountingReader(StateReader):
    def __init__(self, kv: MemoryKV) -> None:
        super().__init__(kv)
        self.spec_reads: list[str] = []

    def run_spec(self, run_id: str) -> dict[str, Any] | None:
        self.spec_reads.append(run_id)
        return super().run_spec(run_id)


async def test_runs_waiting_their_turn_have_their_spec_read_once() -> None:
    kv = MemoryKV(keys.SPACES)
    log = LocalCommandLog(kv)
    reader = CountingReader(kv)
    terms = RunTermsCache(reader.run_spec)
    coord = Coordinator(log, reader, JobLogStore(MemoryKV(JOBLOG_SPACES)).append, lambda: 1000, terms=terms)
    settings = NotifySettings(1, 1, 1, 1, 1, "http://kiok")
    notifier = Notifier(log, reader, lambda: 1000, lambda run, text: None, settings, terms=terms)
    log.subscribe(coord.on_effects)
    log.subscribe(terms.on_effects)
    await log.propose(c.RegisterDag(at_ms=1, spec=spec_from_yaml(DAG).to_dict()))
    runs = [(await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"] for _ in range(QUEUED)]
    w1 = Worker("w1")
    coord.add_worker(w1)

    await coord.dispatch_pass()
    await notifier.check()
    assert [a.run_id for a in w1.offers] == runs[:1]
    assert sorted(set(reader.spec_reads)) == sorted(runs)  # each learnt once ...
    reader.spec_reads.clear()
    for _ in range(5):  # ... and not again, however often the pass and the check run
        await coord.dispatch_pass()
        await notifier.check()
    assert reader.spec_reads == []
    assert coord.waiting[runs[-1]] == "max_active_runs (1) reached for DAG d"

    # The first run ends: the next one is assigned (its spec read to be offered), the
    # ended run's terms are forgotten, and the rest still wait without a read.
    fence = w1.offers[0].fence
    await log.propose(
        c.ReportTasks(
            at_ms=3, run_id=runs[0], term=fence.term, epoch=fence.epoch, worker="w1",
            tasks={"a": {"state": "SUCCESS", "attempt": 1, "startedMs": 2, "endedMs": 3}},
        )
    )  # fmt: skip
    assert reader.run_header(runs[0])["state"] == "SUCCESS"  # type: ignore[index]
    await coord.dispatch_pass()
    assert [a.run_id for a in w1.offers] == runs[:2]
    assert reader.spec_reads == [runs[1]]
    assert len(terms) == QUEUED - 1


class PausingWorker(Worker):
    """Takes every run; its first offer is answered after the DAG was paused."""

    def __init__(self, log: LocalCommandLog) -> None:
        super().__init__("w1", free=8)
        self.log = log

    async def offer(self, assignment: Any, labels: Any) -> Any:
        if not self.offers:
            await self.log.propose(c.SetDagPaused(at_ms=3, dag_id="d", paused=True))
        return await super().offer(assignment, labels)


class RefusingWorker(Worker):
    async def offer(self, assignment: Any, labels: Any) -> Any:
        self.offers.append(assignment)
        return OfferReply(OfferVerdict.NAK, "full")


async def setup(dag: str, runs: int) -> tuple[Coordinator, LocalCommandLog, StateReader, list[str]]:
    kv = MemoryKV(keys.SPACES)
    log, reader = LocalCommandLog(kv), StateReader(kv)
    coord = Coordinator(log, reader, JobLogStore(MemoryKV(JOBLOG_SPACES)).append, lambda: 1000)
    log.subscribe(coord.on_effects)
    await log.propose(c.RegisterDag(at_ms=1, spec=spec_from_yaml(dag).to_dict()))
    return (
        coord,
        log,
        reader,
        [(await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"] for _ in range(runs)],
    )


def running(reader: StateReader, runs: list[str]) -> list[str]:
    return [r for r in runs if reader.run_header(r)["state"] == "RUNNING"]  # type: ignore[index]


async def test_a_dag_paused_while_a_pass_offers_its_runs_starts_no_more() -> None:
    """A pass awaits every offer; a pause committed meanwhile holds the runs after it (found
    by review: a pass that read the DAG once started them all)."""
    coord, log, reader, runs = await setup('dag: {id: d}\ntasks: [{id: a, script: "true"}]\n', 4)
    coord.add_worker(PausingWorker(log))
    await coord.dispatch_pass()
    assert running(reader, runs) == runs[:1]
    assert coord.waiting[runs[1]] == "DAG d is paused"


async def test_a_refused_run_still_counts_against_max_active_runs() -> None:
    """A run a worker refuses is released but stays RUNNING: in the same pass another worker
    must not be given a second run of a DAG allowed one (found by review)."""
    coord, _, reader, runs = await setup(DAG, 2)
    refusing, taking = RefusingWorker("w1", free=8), Worker("w2", free=4)
    coord.add_worker(refusing)
    coord.add_worker(taking)
    await coord.dispatch_pass()  # w1 (more free slots) is offered the first run and refuses
    assert [a.run_id for a in refusing.offers] == runs[:1] and taking.offers == []
    await coord.dispatch_pass()  # w1 backs off: the released run goes to w2, and only it
    assert [a.run_id for a in taking.offers] == runs[:1]
    assert running(reader, runs) == runs[:1]
