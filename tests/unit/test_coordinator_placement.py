"""Placement: label match, most specific first, then most free slots; draining, full and
backing-off workers are skipped with a reason."""

from __future__ import annotations

from collections.abc import Iterable

from kiok.master.coordinator import Coordinator
from kiok.protocol.link import WorkerInfo
from kiok.protocol.messages import Assignment, OfferReply, OfferVerdict
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.joblog import JobLogStore
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader
from tests.worker_handles import NoClaims


class FakeWorker(NoClaims):
    def __init__(self, wid: str, labels: tuple[str, ...], free: int, *, draining: bool = False) -> None:
        self._info = WorkerInfo(wid, "-", labels, 8, free, True, draining, None)

    def info(self) -> WorkerInfo:
        return self._info

    async def offer(self, assignment: Assignment, labels: Iterable[str]) -> OfferReply:
        return OfferReply(OfferVerdict.ACK)

    def cancel(self, run_id: str, reason: str) -> None:
        pass


def coordinator(*workers: FakeWorker) -> Coordinator:
    kv = MemoryKV(keys.SPACES)
    c = Coordinator(LocalCommandLog(kv), StateReader(kv), JobLogStore(MemoryKV(["logs"])).append, lambda: 0)
    for w in workers:
        c.add_worker(w)
    return c


def picked(c: Coordinator, labels: tuple[str, ...]) -> str:
    worker, why = c.pick_worker(labels, 0)
    return worker.info().id if worker else why


def test_most_specific_match_then_most_free_slots() -> None:
    c = coordinator(
        FakeWorker("gpu-big", ("gpu", "linux", "x86"), 8),
        FakeWorker("gpu-small", ("gpu",), 2),
        FakeWorker("plain-a", (), 3),
        FakeWorker("plain-b", (), 5),
    )
    assert picked(c, ("gpu",)) == "gpu-small"
    assert picked(c, ()) == "plain-b"
    assert picked(c, ("tpu",)) == "no connected worker has labels ['tpu']"


def test_draining_and_full_workers_are_skipped_with_a_reason() -> None:
    assert "draining" in picked(coordinator(FakeWorker("d", (), 8, draining=True)), ())
    assert "capacity" in picked(coordinator(FakeWorker("f", (), 0)), ())
    assert picked(coordinator(FakeWorker("f", (), 0), FakeWorker("ok", ("x",), 1)), ()) == "ok"
    assert picked(coordinator(), ()) == "no worker is connected"


class SilentWorker(FakeWorker):
    def __init__(self, wid: str, free: int, last_heard_ms: int) -> None:
        super().__init__(wid, (), free)
        self._info = WorkerInfo(wid, "-", (), 8, free, True, False, last_heard_ms)


def test_a_worker_silent_for_a_few_heartbeats_is_offered_runs_last() -> None:
    """A frozen worker still looks connected until its heartbeat timeout; an offer to it
    would hang. Another worker gets the run, even with fewer free slots."""
    kv = MemoryKV(keys.SPACES)
    c = Coordinator(
        LocalCommandLog(kv),
        StateReader(kv),
        JobLogStore(MemoryKV(["logs"])).append,
        lambda: 10_000,
        silent_after_ms=3000,
    )
    c.add_worker(SilentWorker("frozen", 8, last_heard_ms=5_000))
    c.add_worker(SilentWorker("alive", 1, last_heard_ms=9_500))

    def at_10s() -> str:
        worker, why = c.pick_worker((), 10_000)
        return worker.info().id if worker else why

    assert at_10s() == "alive"
    c.workers.pop("alive")
    assert at_10s() == "frozen"  # the only one: still offered
