"""A restore brings runs back to the fences they had when the backup was taken. A driver
given a run after that (a worker cut off while the restore ran, its frames delayed) holds a
later fence: no assignment after the restore may hand that fence out again, or its stale
reports and logs would be taken as the new driver's."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from kiok.core.states import TaskRecord, TaskState
from kiok.dag.load import spec_from_yaml
from kiok.errors import InvalidInput
from kiok.master.coordinator import Coordinator
from kiok.protocol.link import WorkerInfo
from kiok.protocol.messages import Assignment, OfferReply, OfferVerdict
from kiok.store import backup as b
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog, apply_batch
from kiok.store.kv import RocksKV
from kiok.store.reader import StateReader
from tests.unit.test_store_compaction import apply
from tests.worker_handles import NoClaims

SPEC = {"dag": {"id": "d"}, "tasks": [{"id": "a", "script": "x"}]}
DAG = 'dag: {id: d}\ntasks:\n  - {id: a, type: shell, script: "true"}\n'


def _assign(kv: RocksKV, run_id: str, worker: str) -> int:
    (fence,) = apply(kv, [c.AssignRun(at_ms=2, run_id=run_id, worker=worker, term=1)])
    return int(fence["epoch"])  # type: ignore[index]


def test_no_fence_handed_out_after_a_backup_is_handed_out_again_after_its_restore(tmp_path: Path) -> None:
    kv = RocksKV(tmp_path / "state", keys.SPACES)
    try:
        state = b.StoreSource("state", kv, keys.SPACES, keep=keys.STATE_KEPT_BY_RESTORE)
        apply(kv, [c.RegisterDag(at_ms=1, spec=SPEC)])
        (created,) = apply(kv, [c.CreateRun(at_ms=1, dag_id="d")])
        run_id = created["runId"]  # type: ignore[index]
        at_backup = _assign(kv, run_id, "w1")
        backup = b.checkpoint([state], tmp_path / "backup")
        after_backup = [_assign(kv, run_id, "w2"), _assign(kv, run_id, "w2")]

        b.replace_contents(state, backup["state"])  # the restore
        header = StateReader(kv).run_header(run_id)
        assert header is not None and header["epoch"] == at_backup  # back to the backup's fence
        again = [_assign(kv, run_id, "w2") for _ in range(3)]
        assert min(again) > max(after_backup) > at_backup
    finally:
        kv.close()


# --- a restore into fresh masters (disaster recovery) ---------------------------------------

T0 = 1_767_225_600_000  # 2026-01-01, the old cluster's clock when the backup was taken


class _Worker(NoClaims):
    """A connected worker that takes every offer and records it."""

    def __init__(self, wid: str) -> None:
        self.id = wid
        self.offers: list[Assignment] = []

    def info(self) -> WorkerInfo:
        return WorkerInfo(self.id, "-", (), 8, 8, True, False, None)

    async def offer(self, assignment: Assignment, labels: Iterable[str]) -> OfferReply:
        self.offers.append(assignment)
        return OfferReply(OfferVerdict.ACK)

    def cancel(self, run_id: str, reason: str) -> None:
        pass


def _coordinator(kv: RocksKV, now_ms: int, *workers: _Worker) -> tuple[Coordinator, LocalCommandLog]:
    log = LocalCommandLog(kv)
    coord = Coordinator(log, StateReader(kv), lambda *a: None, lambda: now_ms, term=1)
    log.subscribe(coord.on_effects)
    for w in workers:
        coord.add_worker(w)
    return coord, log


async def test_fresh_masters_restoring_a_backup_never_hand_out_a_fence_given_after_it(tmp_path: Path) -> None:
    """The old cluster gives a run to w1 (in the backup), then, after the backup, to w2. The
    cluster is lost; w2 survives, still driving the run. Fresh masters (empty stores, terms
    from 1 again) restore the backup and w2 reconnects: the fence it is given now must not be
    the one its old driver holds, or that driver's delayed reports would count."""
    old = RocksKV(tmp_path / "old", keys.SPACES)
    w1, w2 = _Worker("w1"), _Worker("w2")
    try:
        coord, log = _coordinator(old, T0, w1)
        await log.propose(c.RegisterDag(at_ms=T0, spec=spec_from_yaml(DAG).to_dict()))
        run_id = (await log.propose(c.CreateRun(at_ms=T0, dag_id="d")))["runId"]
        await coord.dispatch_pass()
        (in_backup,) = w1.offers
        backup = b.checkpoint([b.StoreSource("state", old, keys.SPACES)], tmp_path / "backup")

        coord, log = _coordinator(old, T0 + 1000, w2)  # w1 gives the run back; w2 takes it
        await log.propose(
            c.ReleaseRun(
                at_ms=T0 + 1000, run_id=run_id, epoch=in_backup.fence.epoch, reason="drain", worker="w1"
            )
        )
        await coord.dispatch_pass()
        (surviving,) = w2.offers
        assert surviving.fence.epoch > in_backup.fence.epoch
    finally:
        old.close()

    fresh = RocksKV(tmp_path / "fresh", keys.SPACES)
    try:
        b.replace_contents(
            b.StoreSource("state", fresh, keys.SPACES, keep=keys.STATE_KEPT_BY_RESTORE), backup["state"]
        )
        coord, log = _coordinator(fresh, T0 + 10 * 60_000, w2)  # the restore, ten minutes later
        await coord.dispatch_pass()
        again = w2.offers[-1]
        assert again is not surviving and again.run_id == run_id
        assert again.fence != surviving.fence  # never the fence w2's old driver holds
        assert again.fence.epoch > surviving.fence.epoch
        stale = c.ReportTasks(
            at_ms=T0 + 10 * 60_000,
            run_id=run_id,
            term=surviving.fence.term,
            epoch=surviving.fence.epoch,
            tasks={
                "a": TaskRecord(state=TaskState.RUNNING, attempt=1, worker="w2", started_at_ms=T0).to_dict()
            },
            worker="w2",
        )
        assert (await log.propose(stale))["fenced"]  # the old driver's report is not taken
    finally:
        fresh.close()


# --- the rule: a fence is at least the assignment's floor -------------------------------------


def _run(kv: RocksKV) -> str:
    apply(kv, [c.RegisterDag(at_ms=1, spec=SPEC)])
    (created,) = apply(kv, [c.CreateRun(at_ms=1, dag_id="d")])
    return str(created["runId"])  # type: ignore[index]


def test_an_assignment_hands_out_a_fence_above_its_floor_and_above_every_earlier_one(tmp_path: Path) -> None:
    kv = RocksKV(tmp_path / "state", keys.SPACES)
    try:
        run_id = _run(kv)
        fences = [
            apply(kv, [c.AssignRun(at_ms=2, run_id=run_id, worker="w", term=1, fence_floor=floor)])[0]
            for floor in (0, 5000, 4000, 9000)  # a floor lower than a fence given before: the counter wins
        ]
        assert [f["epoch"] for f in fences] == [1, 5001, 5002, 9001]  # type: ignore[index]
        assert [f["first"] for f in fences] == [True, False, False, False]  # type: ignore[index]
        assert StateReader(kv).run_header(run_id)["epoch"] == 9001  # type: ignore[index]
    finally:
        kv.close()


def test_an_assignment_logged_before_the_floor_existed_applies_as_it_did(tmp_path: Path) -> None:
    kv = RocksKV(tmp_path / "state", keys.SPACES)
    try:
        run_id = _run(kv)
        apply(kv, [c.AssignRun(at_ms=T0, run_id=run_id, worker="w", term=1, fence_floor=c.fence_floor(T0))])
        logged = {"k": "assign_run", "at_ms": T0 + 1, "run_id": run_id, "worker": "w", "term": 1}
        cmd = c.from_wire(logged)
        assert cmd == c.AssignRun(at_ms=T0 + 1, run_id=run_id, worker="w", term=1, fence_floor=0)
        (fence,) = apply(kv, [cmd])
        assert fence["epoch"] == c.fence_floor(T0) + 2  # type: ignore[index]
    finally:
        kv.close()


def test_the_floor_follows_the_clock_and_fits_every_place_a_fence_is_kept() -> None:
    assert c.fence_floor(T0 + 1) - c.fence_floor(T0) == c.FENCES_PER_MS >= 1024
    assert c.fence_floor(-5) == 0  # a clock before 1970 gives no floor, never a negative one
    year_2200 = 7_258_118_400_000
    assert c.fence_floor(year_2200) < 2**53  # exact as a JSON number, in JavaScript too
    assert c.fence_floor(2**62) == c.MAX_FENCE_FLOOR < 2**63 - 2**32  # a signed 64-bit msgpack int


@pytest.mark.parametrize("case", ["negative", "too large", "a bool"])
def test_an_assignment_with_a_floor_out_of_range_is_refused(tmp_path: Path, case: str) -> None:
    floor = {"negative": -1, "too large": c.MAX_FENCE_FLOOR + 1, "a bool": True}[case]
    kv = RocksKV(tmp_path / "state", keys.SPACES)
    try:
        run_id = _run(kv)
        applied = apply_batch(
            kv, [c.AssignRun(at_ms=2, run_id=run_id, worker="w", term=1, fence_floor=floor)]
        )
        ((_, error),) = applied.outcomes
        assert isinstance(error, InvalidInput)
    finally:
        kv.close()
