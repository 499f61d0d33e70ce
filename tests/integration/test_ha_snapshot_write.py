"""Three real masters writing Raft snapshots: a snapshot is written off the Raft thread, so
while every master holds its write for seconds (``kiok.raft.snapshot.write.pause.ms``, a
testing aid) the cluster keeps its leader and keeps committing, and the file holds the state
at its own index, not the writes applied while it was being written."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from kiok.store import joblog, snapshot, snapshot_ref
from kiok.store import keys as k
from kiok.store.kv import RocksKV
from kiok.testing.process import Master, MasterGroup
from tests.integration.test_ha import FAST

pytestmark = pytest.mark.slow

PAUSED = re.compile(r"snapshot at raft index \d+: writing paused")
WRITTEN = re.compile(r"snapshot at raft index \d+ written")
PAUSE_S = 8.0


def _count(master: Master, line: re.Pattern[str]) -> int:
    return len(line.findall(master.read_log()))


def _register(master: Master, dag_id: str) -> float:
    """Register a one-task DAG through ``master``; the seconds the 201 took."""
    started = time.monotonic()
    master.register(f"dag: {{id: {dag_id}}}\ntasks:\n  - {{id: t, script: 'true'}}\n")
    return time.monotonic() - started


def _health(master: Master) -> tuple[str, int, int]:
    """(leader id, term, applied index) as ``master`` sees them."""
    body = master.http("GET", master.url + "/cluster/health").json()
    return str(body["leader"]), int(body["term"]), int(body["appliedIndex"])


def _snapshot_dags(data_dir: Path, scratch: Path) -> tuple[int, list[str]]:
    """The Raft index of the master's last snapshot and the DAG ids its state holds (the file
    installed into empty stores in ``scratch``)."""
    ref = snapshot_ref.load(data_dir / "raft" / "snapshot")
    assert ref is not None
    state = RocksKV(scratch / "state", k.SPACES)
    logs = RocksKV(scratch / "joblog", joblog.SPACES)
    try:
        loaded = snapshot.read(
            data_dir / "raft" / "snapshots" / ref.digest,
            [
                snapshot.Part("state", state, k.SPACES, (k.KMS, k.RAFT_APPLIED.encode())),
                snapshot.Part("joblog", logs, joblog.SPACES, (joblog.REPLICATION, joblog.APPLIED)),
            ],
        )
        dags = [
            m.group(1).decode()
            for key, _ in state.scan(k.META, b"dag/")
            if (m := re.fullmatch(rb"dag/([ab]\d+)", key))
        ]
    finally:
        state.close()
        logs.close()
    return loaded.index, sorted(dags, key=lambda d: (d[0], int(d[1:])))


def test_the_cluster_keeps_its_leader_and_commits_while_snapshots_are_written(tmp_path: Path) -> None:
    env = {
        **FAST,
        "KIOK_RAFT_COMPACTION_MIN_ENTRIES": "20",
        "KIOK_RAFT_SNAPSHOT_WRITE_PAUSE_MS": str(int(PAUSE_S * 1000)),
    }
    group = MasterGroup(tmp_path, extra_env=env)
    workers = []
    try:
        group.start()
        leader = group.leader()
        workers.append(group.add_worker(leader, "w1"))  # a cluster opens with a worker
        leader.wait_open()
        # Starting took about 20 entries: a snapshot may be under way, let it finish.
        leader.wait_for(lambda: _count(leader, PAUSED) == _count(leader, WRITTEN), 30, "no snapshot write")
        first = _health(leader)
        writes = _count(leader, PAUSED)
        before = 0
        while _count(leader, PAUSED) == writes:  # about 20 entries: the next compaction
            _register(leader, f"a{before}")
            before += 1
            assert before < 200, "no snapshot was started"
        held_from = time.monotonic()
        # Every master is now holding a snapshot write for PAUSE_S: writes still commit.
        took = [_register(leader, f"b{i}") for i in range(10)]
        assert time.monotonic() - held_from < PAUSE_S / 2, took  # committed during the hold
        assert _count(leader, WRITTEN) == writes, "the write was not held"
        assert _health(leader)[:2] == first[:2], "a new election"

        leader.wait_for(lambda: _count(leader, WRITTEN) > writes, 30, "the snapshot written")
        index, dags = _snapshot_dags(leader.data_dir, tmp_path / "installed")
        # The state at one index: the first DAGs registered (in order), none of those
        # committed while the file was being written.
        assert dags == [f"a{i}" for i in range(len(dags))], dags
        assert 0 < len(dags) <= before
        now = _health(leader)
        assert now[:2] == first[:2], "a new election"
        assert first[2] < index < now[2]
    finally:
        for w in workers:
            w.stop()
        group.stop()
