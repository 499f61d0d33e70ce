"""Commit throughput and latency of the replicated command log: task reports committed through
3 Raft masters (``RaftCommandLog`` over PySyncObj, encrypted entries and an encrypted RocksDB
state store on each master, as ``kiok master`` runs them).

    .venv/bin/python bench/raft_commit.py [--tasks 100] [--concurrency 1,8,64,256]

This process is master m1 (the others defer their first election, so m1 leads); m2 and m3 are
child processes. For each concurrency level C, C runs of ``--tasks`` independent tasks are
created and assigned, then C drivers report every task through QUEUED -> RUNNING -> SUCCESS,
one state change per ``ReportTasks`` command, each awaiting its commit before the next — the
worst case for the log (a real driver often reports several tasks at once). Reports proposed
in the same event-loop turn share one Raft entry (group commit).

Prints one JSON line per level: {"metric":"commit","system":"raft_3_masters","concurrency",
"state_changes","wall_s","changes_per_s","entries","p50_ms","p99_ms"}, then a check that both
followers applied every entry ({"metric":"raft_followers","applied":[...],"leader_applied"}),
then (unless --no-single) the same load on one master's fsync'd local log
({"system":"single_master",...}), so Raft's cost reads as a ratio on a noisy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kiok.core.states import TaskRecord
from kiok.core.transitions import TaskEvent, TaskEventKind, apply_task_event
from kiok.dag.load import spec_from_yaml
from kiok.security.kms import Keyring, derive_root_key
from kiok.store import commands as c
from kiok.store import keys as k
from kiok.store.commandlog import LocalCommandLog
from kiok.store.encrypted import EncryptedKV
from kiok.store.joblog import ENCRYPTION_KEYS as JOBLOG_ENCRYPTION_KEYS
from kiok.store.joblog import SPACES as JOBLOG_SPACES
from kiok.store.joblog import JobLogStore
from kiok.store.keyring import new_keyring
from kiok.store.kv import RocksKV
from kiok.store.replicated import RaftCommandLog, RaftConfig, ReplicatedStores
from kiok.testing.process import free_port

MASTER_KEY = "bench-master-key-0123456789abcdef0123456789"
ITERATIONS = 1_000  # only derives the bench's root key; not what is measured
STEPS = (TaskEventKind.READY, TaskEventKind.START, TaskEventKind.SUCCEED)


def open_node(
    master_id: str, peers: dict[str, str], directory: Path, salt: bytes, wrapped: bytes, defer_s: float
) -> RaftCommandLog:
    ring = Keyring.unwrap(wrapped, derive_root_key(MASTER_KEY, salt, ITERATIONS))
    raw = RocksKV(directory / "state", k.SPACES)
    state = EncryptedKV(raw, k.ENCRYPTION_KEYS)
    joblog_raw = RocksKV(directory / "joblog", JOBLOG_SPACES)
    joblog_kv = EncryptedKV(joblog_raw, JOBLOG_ENCRYPTION_KEYS)
    for kv in (state, joblog_kv):
        kv.set_keyring(ring)
    log = RaftCommandLog(
        ReplicatedStores(state, raw, JobLogStore(joblog_kv), joblog_raw),
        RaftConfig(master_id, peers, directory / "raft", MASTER_KEY, defer_s=defer_s),
        on_applied=lambda _fx: None,
        on_restored=lambda: None,
        on_role_change=lambda: None,
    )
    return log


async def follower(args: argparse.Namespace) -> None:
    """A child master: replicate until the parent names the index to reach, then report."""
    peers = json.loads(args.peers)
    log = open_node(
        args.node, peers, Path(args.dir), bytes.fromhex(args.salt), bytes.fromhex(args.wrapped), defer_s=30.0
    )
    log.start()
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    target = int(line or 0)
    deadline = time.monotonic() + 60
    while log.applied_index() < target and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    print(json.dumps({"node": args.node, "applied": log.applied_index()}), flush=True)
    log.stop()


async def drive(
    log: RaftCommandLog | LocalCommandLog,
    run_id: str,
    fence: dict[str, int],
    task_ids: list[str],
    latencies: list[float],
) -> None:
    for tid in task_ids:
        rec = TaskRecord()
        for step in STEPS:
            now = int(time.time() * 1000)
            rec = apply_task_event(rec, TaskEvent(step, now, worker="bench", exit_code=0))[0]
            t0 = time.perf_counter()
            out = await log.propose(
                c.ReportTasks(
                    at_ms=now,
                    run_id=run_id,
                    term=fence["term"],
                    epoch=fence["epoch"],
                    tasks={tid: rec.to_dict()},
                )
            )
            latencies.append(time.perf_counter() - t0)
            assert out["accepted"] == 1, out


async def load(
    log: RaftCommandLog | LocalCommandLog, args: argparse.Namespace, *, term: int, system: str
) -> None:
    task_ids = [f"t{i}" for i in range(args.tasks)]
    yaml = "dag: {id: bench}\ntasks:\n" + "".join(f"  - {{id: {t}, script: 'true'}}\n" for t in task_ids)
    await log.propose(c.RegisterDag(at_ms=0, spec=spec_from_yaml(yaml).to_dict()))
    for concurrency in args.concurrency:
        runs = []
        for _ in range(concurrency):
            run_id = (await log.propose(c.CreateRun(at_ms=int(time.time() * 1000), dag_id="bench")))["runId"]
            fence = await log.propose(c.AssignRun(at_ms=0, run_id=run_id, worker="bench", term=term))
            runs.append((run_id, fence))
        latencies: list[float] = []
        batches = log.batches
        t0 = time.perf_counter()
        await asyncio.gather(*(drive(log, rid, fence, task_ids, latencies) for rid, fence in runs))
        wall = time.perf_counter() - t0
        latencies.sort()
        print(
            json.dumps(
                {
                    "metric": "commit",
                    "system": system,
                    "concurrency": concurrency,
                    "state_changes": len(latencies),
                    "wall_s": round(wall, 3),
                    "changes_per_s": round(len(latencies) / wall),
                    "entries": log.batches - batches,
                    "p50_ms": round(statistics.median(latencies) * 1000, 2),
                    "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
                }
            ),
            flush=True,
        )


async def single(args: argparse.Namespace, root: Path) -> None:
    """The same load on one master's local command log (fsync'd group commit), for the ratio."""
    _, salt, wrapped, _ = new_keyring(MASTER_KEY, ITERATIONS)
    state = EncryptedKV(RocksKV(root / "state", k.SPACES), k.ENCRYPTION_KEYS)
    state.set_keyring(Keyring.unwrap(wrapped, derive_root_key(MASTER_KEY, salt, ITERATIONS)))
    try:
        await load(LocalCommandLog(state), args, term=1, system="single_master")
    finally:
        state.close()


async def leader(args: argparse.Namespace, root: Path) -> None:
    peers = {f"m{i}": f"127.0.0.1:{free_port()}" for i in (1, 2, 3)}
    _, salt, wrapped, _ = new_keyring(MASTER_KEY, ITERATIONS)
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--node",
                mid,
                "--peers",
                json.dumps(peers),
                "--dir",
                str(root / mid),
                "--salt",
                salt.hex(),
                "--wrapped",
                wrapped.hex(),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for mid in ("m2", "m3")
    ]
    log = open_node("m1", peers, root / "m1", salt, wrapped, defer_s=0.0)
    try:
        log.start()
        deadline = time.monotonic() + 30
        while not log.is_leader:
            if time.monotonic() > deadline:
                raise SystemExit("m1 did not become the leader within 30 s")
            await asyncio.sleep(0.05)
        await load(log, args, term=log.term, system="raft_3_masters")
        target = log.applied_index()
        applied = []
        for child in children:
            out, _ = child.communicate(f"{target}\n", timeout=90)
            applied.append(json.loads(out.strip().splitlines()[-1])["applied"])
        print(
            json.dumps({"metric": "raft_followers", "applied": applied, "leader_applied": target}), flush=True
        )
    finally:
        log.stop()
        for child in children:
            if child.poll() is None:
                child.kill()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 64, 256])
    ap.add_argument(
        "--single",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the load on one master's local log (default: yes)",
    )
    ap.add_argument("--node", help=argparse.SUPPRESS)
    ap.add_argument("--peers", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--salt", help=argparse.SUPPRESS)
    ap.add_argument("--wrapped", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.node:
        asyncio.run(follower(args))
        return
    with tempfile.TemporaryDirectory(prefix="kiok-commit-bench-") as tmp:
        asyncio.run(leader(args, Path(tmp) / "raft"))
        if args.single:
            asyncio.run(single(args, Path(tmp) / "single"))


if __name__ == "__main__":
    main()
