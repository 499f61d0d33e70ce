"""Three real ``kiok master`` processes replicating with Raft (PySyncObj), with real workers:
forwarding from followers, a run that survives kill -9 of the leader with every task
committed once, acknowledged writes surviving rolling kills with identical stores, sticky
leadership after a full restart, and a master catching up from a snapshot."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from kiok.store import snapshot_ref
from kiok.testing.process import Master, MasterGroup, store_digest
from kiok.testing.tls import TestCA

pytestmark = pytest.mark.slow

FAST = {"KIOK_WORKER_HEARTBEAT_TIMEOUT_MS": "3000", "KIOK_WORKER_HEARTBEAT_INTERVAL_MS": "300"}


@pytest.fixture
def group(tmp_path: Path) -> Iterator[MasterGroup]:
    g = MasterGroup(tmp_path, extra_env=FAST)
    yield g
    g.stop()


def test_followers_forward_and_a_run_survives_the_leaders_death(tmp_path: Path, group: MasterGroup) -> None:
    group.start()
    leader = group.leader()
    follower = group.followers(leader)[0]
    # A write sent to a follower is forwarded; the join token it returns admits workers.
    workers = [group.add_worker(follower, f"w{i}") for i in (1, 2)]
    try:
        for m in group.masters.values():
            m.wait_open()
        view = follower.api("GET", "/api/v1/cluster").json()
        assert view["leader"] == next(mid for mid, m in group.masters.items() if m is leader)
        assert view["term"] >= 1
        assert {m["id"] for m in view["masters"]} == set(group.masters)
        assert all(m["ready"] for m in view["masters"]) and len(view["workers"]) == 2

        dag = follower.register(
            "dag: {id: ha}\ntasks:\n"
            "  - {id: a, script: 'echo a'}\n"
            "  - {id: b, requires: [a], script: 'sleep 3; echo b'}\n"
            "  - {id: c, requires: [b], script: 'echo c'}\n"
        )
        # Read your writes through a follower: what it forwarded is in its own copy when it answers.
        quick = follower.register("dag: {id: quick}\ntasks:\n  - {id: t, script: 'true'}\n")
        for _ in range(20):
            created = follower.trigger(quick)
            assert follower.api("GET", f"/api/v1/runs/{created}").status_code == 200, created
        # Which Raft entry the leader had reached is told to the forwarding master only.
        through = follower.api("POST", f"/api/v1/dags/{quick}/runs", json={})
        posing = leader.http(
            "POST", leader.url + f"/api/v1/dags/{quick}/runs", json={}, headers={"X-Kiok-Forwarded-By": "m9"}
        )
        assert through.status_code == 201 and posing.status_code == 401, posing.text
        assert "x-kiok-applied-index" not in {**through.headers, **posing.headers}
        run_id = follower.trigger(dag)
        leader.wait_for(lambda: leader.run(run_id)["tasks"]["b"]["state"] == "RUNNING", 20, "task b to run")
        leader.kill9()
        killed_at = time.monotonic()
        survivors = group.followers(leader)
        new_leader = group.leader(exclude=next(mid for mid, m in group.masters.items() if m is leader))
        assert new_leader is not leader
        new_leader.wait_for(
            lambda: new_leader.api("POST", f"/api/v1/dags/{dag}/unpause").status_code == 200,
            30,
            "the new leader to accept a write",
        )
        took = time.monotonic() - killed_at
        run = new_leader.wait_run(run_id, 40)
        assert run["state"] == "SUCCESS", run
        # The driver kept its run across the failover: every task committed once, attempt 1.
        assert {t: (r["state"], r["attempt"]) for t, r in run["tasks"].items()} == {
            "a": ("SUCCESS", 1),
            "b": ("SUCCESS", 1),
            "c": ("SUCCESS", 1),
        }
        for m in survivors:
            # Right after a failover a follower may still answer 503 not_ready until it sees
            # the worker connected to the new leader (the gate of DESIGN.md): a client retries.
            m.wait_for(lambda m=m: m.api("GET", f"/api/v1/runs/{run_id}").status_code == 200, 15, "ready")
            assert m.run(run_id)["state"] == "SUCCESS"
            # Job logs are replicated: a's output reached the old leader before it died, and
            # every survivor serves every task's log (and the run log) from its own store.
            assert [m.log(run_id, t) for t in "abc"] == ["a\n", "b\n", "c\n"]
            assert "assigned" in m.log(run_id, "__run__")
        assert took < 15
    finally:
        for w in workers:
            w.stop()


def test_a_run_survives_a_frozen_leader(group: MasterGroup) -> None:
    """A leader that freezes (SIGSTOP here; a hung host, a partition without a FIN) keeps its
    connections open: its kernel still takes the workers' heartbeats. A worker leaves a
    master silent for the heartbeat timeout (masters answer heartbeats), so it reaches the new
    leader and keeps driving its run there: every task committed once, attempt 1."""
    group.start()
    leader = group.leader()
    follower = group.followers(leader)[0]
    worker = group.add_worker(follower, "w1")
    try:
        for m in group.masters.values():
            m.wait_open()
        dag = follower.register(
            "dag: {id: frozen}\ntasks:\n"
            "  - {id: a, script: 'echo a'}\n"
            "  - {id: b, requires: [a], script: 'sleep 3; echo b'}\n"
            "  - {id: c, requires: [b], script: 'echo c'}\n"
        )
        run_id = follower.trigger(dag)
        leader.wait_for(lambda: leader.run(run_id)["tasks"]["b"]["state"] == "RUNNING", 20, "task b to run")
        frozen = next(mid for mid, m in group.masters.items() if m is leader)
        leader.signal(signal.SIGSTOP)
        try:
            new_leader = group.leader(exclude=frozen)
            # It opens (503 not_ready before) once the worker has left the frozen one for it.
            new_leader.wait_for(
                lambda: new_leader.api("GET", f"/api/v1/runs/{run_id}").status_code == 200,
                30,
                "the worker at the new leader",
            )
            run = new_leader.wait_run(run_id, 40)
            assert run["state"] == "SUCCESS", run
            assert {t: (r["state"], r["attempt"]) for t, r in run["tasks"].items()} == {
                "a": ("SUCCESS", 1),
                "b": ("SUCCESS", 1),
                "c": ("SUCCESS", 1),
            }
            assert [new_leader.log(run_id, t) for t in "abc"] == ["a\n", "b\n", "c\n"]
        finally:
            leader.signal(signal.SIGCONT)
    finally:
        worker.stop()


def test_acknowledged_writes_survive_rolling_kills_and_stores_match(
    tmp_path: Path, group: MasterGroup
) -> None:
    group.start()
    leader = group.leader()
    worker = group.add_worker(leader, "w1")
    acknowledged: list[str] = []
    try:
        leader.wait_open()
        order = list(group.masters)
        for i in range(200):
            if i % 50 == 25:  # kill -9 one master, keep writing, bring it back
                victim = group.masters[order[(i // 50) % 3]]
                victim.kill9()
            if i % 50 == 45:
                victim.start(timeout_s=60)
            body = f"dag: {{id: w{i}}}\ntasks:\n  - {{id: t, script: 'echo {i}'}}\n"
            deadline = time.monotonic() + 30
            while True:
                target = next(
                    (m for m in group.masters.values() if m.proc is not None and m.proc.poll() is None), None
                )
                assert target is not None
                try:
                    r = target.api(
                        "POST",
                        "/api/v1/dags",
                        content=body,
                        headers={"Content-Type": "application/yaml"},
                        timeout=10,
                    )
                except Exception:
                    r = None
                if r is not None and r.status_code == 201:
                    acknowledged.append(f"w{i}")
                    break
                assert time.monotonic() < deadline, r.text if r is not None else "no answer"
                time.sleep(0.2)
        for m in group.masters.values():
            listed = {d["dagId"] for d in m.wait_for(lambda m=m: _dags(m), 30, "dags")}
            assert set(acknowledged) <= listed
    finally:
        worker.stop()
    group.settle()
    group.stop_quietly()
    digests = {mid: store_digest(m.data_dir, MasterGroup.MASTER_KEY) for mid, m in group.masters.items()}
    assert len(set(digests.values())) == 1, digests


def _dags(m: Master) -> list[dict[str, object]] | None:
    r = m.api("GET", "/api/v1/dags")
    if r.status_code != 200:
        return None
    body = r.json()
    dags: list[dict[str, object]] = body["dags"]
    return dags if len(dags) >= 200 else None


def test_leadership_is_sticky_across_a_full_restart(group: MasterGroup) -> None:
    group.start()
    first = group.leader()
    for m in [*group.followers(first), first]:  # followers first: no new election on the way down
        m.stop()
    # A whole-cluster restart: the others defer to the previous leader, whoever is quickest.
    group.start()
    assert group.leader() is first


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_a_master_that_was_down_catches_up_from_a_snapshot(tmp_path: Path, tls: bool) -> None:
    """Over https, the snapshot is fetched from the leader's admin port verified by kiok.tls.ca."""
    env = {**FAST, "KIOK_RAFT_COMPACTION_MIN_ENTRIES": "20"}
    if tls:
        ca = TestCA(tmp_path / "ca")
        env |= ca.env(ca.issue("masters"))
    group = MasterGroup(tmp_path, extra_env=env)
    try:
        group.start()
        leader = group.leader()
        worker = group.add_worker(leader, "w1")
        leader.wait_open()
        lagging = group.followers(leader)[0]
        lagging.stop()
        run_id = leader.trigger(
            leader.register("dag: {id: out}\ntasks:\n  - {id: t, script: 'echo hello'}\n")
        )
        assert leader.wait_run(run_id, 30)["state"] == "SUCCESS"
        for i in range(60):
            r = leader.api(
                "POST",
                "/api/v1/dags",
                content=f"dag: {{id: s{i}}}\ntasks:\n  - {{id: t, script: 'echo {i}'}}\n",
                headers={"Content-Type": "application/yaml"},
            )
            assert r.status_code == 201, r.text
        lagging.start()
        lagging.wait_for(lambda: "restored from a snapshot" in lagging.read_log(), 30, "a snapshot install")
        assert f"fetched from {'https' if tls else 'http'}://" in lagging.read_log()
        lagging.wait_open()
        assert lagging.log(run_id, "t") == "hello\n"  # job logs travel in the snapshot too
        worker.stop()
        group.settle()
        group.stop_quietly()
        digests = {store_digest(m.data_dir, MasterGroup.MASTER_KEY) for m in group.masters.values()}
        assert len(digests) == 1
    finally:
        group.stop()


def test_a_master_catches_up_from_a_large_snapshot_fetched_and_a_damaged_one_is_refused(
    tmp_path: Path,
) -> None:
    """A snapshot of tens of MB (PySyncObj carried ~30 MB ones short, or never): Raft carries
    a reference, the master that is behind fetches the file over HTTP. A damaged file is
    refused before the stores are touched, and the next snapshot installs."""
    env = {
        **FAST,
        "KIOK_RAFT_COMPACTION_MIN_ENTRIES": "200",
        # Tens of MB of job log applied and installed on Raft threads of a busy machine
        # (snapshots are written off them): room before an election.
        "KIOK_RAFT_ELECTION_TIMEOUT_MIN_MS": "3000",
        "KIOK_RAFT_ELECTION_TIMEOUT_MAX_MS": "4000",
    }
    group = MasterGroup(tmp_path, extra_env=env)
    try:
        group.start()
        leader = group.leader()
        worker = group.add_worker(leader, "w1")
        leader.wait_open()
        lagging = group.followers(leader)[0]
        lagging.stop()
        # ~65 MB of job log (base64 of random bytes: nothing compresses it) in 64 KiB entries.
        big = _output_dag(leader, "big", 24_000_000, ["a", "b"])
        leader.wait_for(lambda: _succeeded(group, big), 90, "the big run")
        for m in group.followers(lagging):  # whichever leads now sends its own snapshot
            ref = m.wait_for(lambda m=m: _big_ref(m.data_dir), 90, "a snapshot holding the job log")
            with (m.data_dir / "raft" / "snapshots" / ref.digest).open("r+b") as f:  # flip one bit
                f.seek(ref.size // 2)
                byte = f.read(1)
                f.seek(ref.size // 2)
                f.write(bytes([byte[0] ^ 1]))
        lagging.start()
        lagging.wait_for(lambda: "damaged in transit" in lagging.read_log(), 30, "the damaged file refused")
        assert "restored from a snapshot" not in lagging.read_log()
        more = _output_dag(group.leader(), "more", 12_000_000, ["c"])  # the next compaction: a sound file
        lagging.wait_for(lambda: "restored from a snapshot" in lagging.read_log(), 90, "a snapshot install")
        # Asked of whoever leads (a busy machine may still see an election).
        lagging.wait_for(lambda: _succeeded(group, more), 90, "the second run")
        lagging.wait_open()
        assert lagging.log(big, "b").endswith("done\n")
        worker.stop()
        group.settle()
        group.stop_quietly()
        digests = {store_digest(m.data_dir, MasterGroup.MASTER_KEY) for m in group.masters.values()}
        assert len(digests) == 1
    finally:
        group.stop()


def _output_dag(master: Master, dag: str, random_bytes: int, tasks: list[str]) -> str:
    """Trigger a DAG whose tasks print base64 of ``random_bytes`` random bytes, then done."""
    script = f"head -c {random_bytes} /dev/urandom | base64 -w 1000; echo done"
    lines = "".join(f"  - {{id: {t}, script: '{script}'}}\n" for t in tasks)
    return master.trigger(master.register(f"dag: {{id: {dag}}}\ntasks:\n{lines}"))


def _succeeded(group: MasterGroup, run_id: str) -> bool:
    """The run succeeded, as whoever leads now tells (a 503 during an election: not yet)."""
    answer = group.leader().api("GET", f"/api/v1/runs/{run_id}")
    return answer.status_code == 200 and answer.json()["state"] == "SUCCESS"


def _big_ref(data_dir: Path) -> snapshot_ref.SnapshotRef | None:
    dump = data_dir / "raft" / "snapshot"
    ref = snapshot_ref.load(dump) if dump.exists() else None
    return ref if ref is not None and ref.size > 50_000_000 else None


def test_a_master_with_another_master_key_is_named_not_silently_missing(tmp_path: Path) -> None:
    group = MasterGroup(tmp_path, extra_env=FAST)
    odd = group.masters["m3"]
    odd.extra_env["KIOK_MASTER_KEY"] = "a-different-master-key-0123456789abcdef"
    try:
        for m in group.masters.values():
            m.spawn()
        for m in group.masters.values():
            m.wait_ready(30)
        leader = group.leader(exclude="m3")
        # m1 and m2 form a quorum; m3 cannot authenticate with them. Both sides say why,
        # in the readiness reason and in the log, instead of m3 looking merely down.
        for m, other in ((odd, "m1"), (leader, "m3")):
            reason = m.wait_for(
                lambda m=m: _reason_naming_the_key(m), 30, "a readiness reason naming the master key"
            )
            assert f"master {other}" in reason
            assert "same KIOK_MASTER_KEY" in m.read_log()
        assert odd.http("GET", odd.url + "/readyz").status_code == 503
    finally:
        group.stop()


def _reason_naming_the_key(m: Master) -> str | None:
    r = m.http("GET", m.url + "/readyz")
    reason = str(r.json().get("reason", ""))
    return reason if r.status_code == 503 and "KIOK_MASTER_KEY" in reason else None


def test_cron_neither_misses_nor_double_fires_across_a_leader_kill(
    tmp_path: Path, group: MasterGroup
) -> None:
    group.start()
    leader = group.leader()
    worker = group.add_worker(leader, "w1")
    try:
        leader.wait_open()
        leader.register("dag: {id: tick, schedule: '* * * * *'}\ntasks:\n  - {id: t, script: 'true'}\n")
        first = leader.wait_for(lambda: _scheduled(leader), 75, "the first cron fire")
        # The leader dies right after firing an interval; the next leader must neither fire
        # that interval again nor skip the next one.
        leader.kill9()
        new_leader = group.leader(exclude=next(mid for mid, m in group.masters.items() if m is leader))
        fired = new_leader.wait_for(
            lambda: (s := _scheduled(new_leader)) and len(s) >= 2 and s, 75, "the next cron fire"
        )
        assert fired[0] == first[0]
        assert fired == sorted(set(fired)), fired  # no interval twice
        assert fired[1] - fired[0] == 60_000, fired  # no interval missed
        group.settle()
        for m in group.followers(leader):  # every survivor holds the same, duplicate-free runs
            seen = _scheduled(m)
            assert seen is not None and seen[:2] == fired[:2] and seen == sorted(set(seen)), seen
    finally:
        worker.stop()


def _scheduled(m: Master) -> list[int] | None:
    """Scheduled fire times (epoch ms, oldest first) of the 'tick' DAG's runs, None if none."""
    r = m.api("GET", "/api/v1/runs", params={"dag": "tick"})
    if r.status_code != 200:
        return None
    times = sorted(
        int(datetime.fromisoformat(run["scheduledAt"].replace("Z", "+00:00")).timestamp() * 1000)
        for run in r.json()["runs"]
        if run["scheduledAt"]
    )
    return times or None
