"""Placement: label match, most specific first, then most free slots; draining, full and
backing-off workers are skipped with a reason."""

from __future__ import annotations

from collections.abc import Iterable

from kiok.master.coordinator import Coordinator, WorkerInfo
from kiok.protocol.messages import Assignment, OfferReply, OfferVerdict
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.joblog import JobLogStore
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader


class FakeWorker:
    def __init__(self, wid: str, labels: tuple[str, ...], free: int, *, draining: bool = False) -> None:
        self._info = WorkerInfo(wid, "-", labels, 8, free, True, draining, None)

    def info(self) -> WorkerInfo:
        return self._info

    async def offer(self, assignment: Assignment, labels: Iterable[str]) -> OfferReply:
        return OfferReply(OfferVerdict.ACK)

    def cancel(self, run_id: str) -> None:
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
