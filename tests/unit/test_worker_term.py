"""The term a leader gives workers (``Welcome.term`` and its fences' term). A worker ignores a
master leading an older term than one it has seen: that is how a deposed leader, still
accepting connections, is told apart from the new one. So the term must only grow, within a
cluster and across a disaster recovery, where fresh masters start Raft again from term 1
and restore a backup of a cluster that may have had many elections."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiok.errors import InvalidInput
from kiok.store import backup as b
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import apply_batch
from kiok.store.kv import RocksKV
from kiok.store.reader import StateReader
from tests.unit.test_store_compaction import apply

T0 = 1_767_225_600_000  # 2026-01-01


def _elect(kv: RocksKV, raft_term: int, now_ms: int, master: str = "m1") -> int:
    (term,) = apply(kv, [c.leader_elected(now_ms, master, raft_term)])
    assert isinstance(term, int)
    return term


def test_each_leader_gets_a_term_above_every_earlier_one_whatever_its_clock(tmp_path: Path) -> None:
    kv = RocksKV(tmp_path / "state", keys.SPACES)
    try:
        first = _elect(kv, 1, T0)
        assert first == c.fence_floor(T0)
        # A later leader whose clock is behind the first's (skew): Raft's order still wins.
        behind = _elect(kv, 2, T0 - 60_000, "m2")
        later = _elect(kv, 3, T0 + 5, "m3")
        assert first < behind < later
        assert behind == first + 1 and later == c.fence_floor(T0 + 5)
        leader = StateReader(kv).last_leader()
        assert leader == {"master": "m3", "term": 3, "atMs": T0 + 5, "workerTerm": later}
    finally:
        kv.close()


def test_fresh_masters_restoring_a_backup_lead_above_the_lost_clusters_terms(tmp_path: Path) -> None:
    """The lost cluster had many elections after its backup; fresh masters elect at Raft term
    1 and restore the backup (which keeps their own term, not the backup's): a surviving
    worker, which saw the lost cluster's last term, must take the fresh leader for a newer
    one, or it would keep looking for a leader until restarted."""
    old = RocksKV(tmp_path / "old", keys.SPACES)
    try:
        _elect(old, 1, T0)
        backup = b.checkpoint([b.StoreSource("state", old, keys.SPACES)], tmp_path / "backup")
        seen_by_worker = max(_elect(old, t, T0 + t) for t in range(2, 2000))  # 1,998 elections
    finally:
        old.close()
    fresh = RocksKV(tmp_path / "fresh", keys.SPACES)
    try:
        state = b.StoreSource("state", fresh, keys.SPACES, keep=keys.STATE_KEPT_BY_RESTORE)
        first = _elect(fresh, 1, T0 + 10 * 60_000)  # ten minutes later
        b.replace_contents(state, backup["state"])
        retaken = _elect(fresh, 1, T0 + 10 * 60_000 + 3)  # the leader takes over the restored state
        assert seen_by_worker < first < retaken
    finally:
        fresh.close()


def test_a_restore_into_a_live_cluster_keeps_its_terms_growing(tmp_path: Path) -> None:
    kv = RocksKV(tmp_path / "state", keys.SPACES)
    try:
        state = b.StoreSource("state", kv, keys.SPACES, keep=keys.STATE_KEPT_BY_RESTORE)
        _elect(kv, 1, T0)
        backup = b.checkpoint([state], tmp_path / "backup")
        before = _elect(kv, 2, T0 + 1)
        b.replace_contents(state, backup["state"])
        assert _elect(kv, 2, T0 - 1) == before + 1  # the clock went back too: still above
    finally:
        kv.close()


def test_an_entry_logged_before_the_floor_existed_applies_as_it_did(tmp_path: Path) -> None:
    kv = RocksKV(tmp_path / "state", keys.SPACES)
    try:
        cmd = c.from_wire({"k": "leader_elected", "at_ms": T0, "master": "m1", "term": 4})
        assert cmd == c.LeaderElected(at_ms=T0, master="m1", term=4, term_floor=0)
        assert apply(kv, [cmd]) == [None]
        assert StateReader(kv).last_leader() == {"master": "m1", "term": 4, "atMs": T0}
        assert _elect(kv, 5, T0) == c.fence_floor(T0)  # nothing was handed out by that entry
    finally:
        kv.close()


@pytest.mark.parametrize("floor", [-1, c.MAX_FENCE_FLOOR + 1, True])
def test_a_floor_out_of_range_is_refused(tmp_path: Path, floor: object) -> None:
    kv = RocksKV(tmp_path / "state", keys.SPACES)
    try:
        cmd = c.LeaderElected(at_ms=T0, master="m1", term=1, term_floor=floor)  # type: ignore[arg-type]
        ((_, error),) = apply_batch(kv, [cmd]).outcomes
        assert isinstance(error, InvalidInput)
        assert StateReader(kv).last_leader() is None
    finally:
        kv.close()
