"""A history of a million runs: are the lists the UI and CLI use still fast?

    .venv/bin/python -m bench.history [--runs 1000000] [--dags 100] [--calls 50]
        [--data-dir DIR] [--keep] [--register-tasks 10000]

1. A ``kiok standalone`` bootstraps a fresh data dir and registers ``--dags`` DAGs of three
   tasks over HTTP; it is stopped.
2. The history is written in-process through the real path: the commands a master applies
   for each run (CreateRun, AssignRun, one ReportTasks that ends every task), through
   ``apply_batch`` into the encrypted RocksDB store, a few hundred runs to a write. Run i
   is created ``--spacing-s`` after run i-1, the newest a minute ago, for DAG i mod
   ``--dags``; one in 20 runs of each DAG fails, one in 200 is cancelled.
3. ``kiok standalone`` starts again on that data dir (restart to ready is timed, its RSS
   read once it served the lists), and each list is called ``--calls`` times over HTTP as a
   client sees it: median and p99 (nearest rank) in ms.
4. Registering a DAG of ``--register-tasks`` tasks (a chain of fan-outs) over HTTP, median
   of three.

One JSON line per measurement on stdout (and appended to bench/results/history.jsonl).
A data dir kept with ``--keep`` is what ``bench/snapshot_install.py`` (installing it on a new
master) and ``bench/retention_sweep.py`` (sweeping 100,000 of its runs) measure.
"""

from __future__ import annotations

import argparse
import functools
import math
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.jsonl import append_result
from kiok.core.states import TaskRecord, TaskState
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import apply_batch
from kiok.store.encrypted import EncryptedKV
from kiok.store.keyring import existing_keyring
from kiok.store.kv import RocksKV
from kiok.store.txn import decode
from kiok.testing.process import Standalone

MASTER_KEY = "history-bench-master-key-0123456789abcdef"
RESULTS = Path(__file__).parent / "results" / "history.jsonl"
#: Runs whose commands go into one apply_batch and one store write.
BATCH_RUNS = 250


def emit(record: dict[str, Any]) -> None:
    append_result(RESULTS, record)


def dag_yaml(dag_id: str) -> str:
    return (
        f"dag: {{id: {dag_id}}}\n"
        "tasks:\n"
        "  - {id: extract, script: 'true'}\n"
        "  - {id: transform, requires: [extract], script: 'true'}\n"
        "  - {id: load, requires: [transform], script: 'true'}\n"
    )


def big_dag_yaml(dag_id: str, tasks: int) -> str:
    """``tasks`` tasks in layers of 100, each task requiring one of the layer before."""
    lines = [f"dag: {{id: {dag_id}}}", "tasks:"]
    for i in range(tasks):
        req = f", requires: [t{i - 100}]" if i >= 100 else ""
        lines.append(f"  - {{id: t{i}{req}, script: 'true'}}")
    return "\n".join(lines) + "\n"


def server(data_dir: Path) -> Standalone:
    return Standalone(data_dir, {"KIOK_MASTER_KEY": MASTER_KEY, "KIOK_WORKER_TASK_ISOLATION": "none"})


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def fill(data_dir: Path, dag_ids: list[str], runs: int, spacing_ms: int) -> None:
    """Write ``runs`` finished runs through ``apply_batch`` into the stopped master's store."""
    found = existing_keyring(data_dir / "state", MASTER_KEY, 200_000)
    assert found is not None, "the bootstrap left no keyring"
    kv = EncryptedKV(RocksKV(data_dir / "state", keys.SPACES), keys.ENCRYPTION_KEYS)
    kv.set_keyring(found[0])
    try:
        raw = kv.get(keys.META, keys.RUN_SEQ_COUNTER.encode())
        seq = 0 if raw is None else int(decode(raw))
        newest_ms = int(time.time() * 1000) - 60_000
        first_ms = newest_ms - runs * spacing_ms
        started = time.monotonic()
        for base in range(0, runs, BATCH_RUNS):
            cmds: list[c.Command] = []
            for i in range(base, min(runs, base + BATCH_RUNS)):
                seq += 1
                at = first_ms + i * spacing_ms
                dag_id = dag_ids[i % len(dag_ids)]
                run_id = f"{dag_id}-{at}-{seq}"
                cmds.append(c.CreateRun(at_ms=at, dag_id=dag_id, trigger="schedule"))
                if (i // len(dag_ids)) % 200 == 7:
                    cmds.append(c.CancelRun(at_ms=at + 5, run_id=run_id))
                    continue
                cmds.append(c.AssignRun(at_ms=at + 1, run_id=run_id, worker="bench-worker", term=1))
                last = TaskState.FAILED if (i // len(dag_ids)) % 20 == 3 else TaskState.SUCCESS
                tasks = {
                    tid: TaskRecord(
                        state=last if tid == "load" else TaskState.SUCCESS,
                        attempt=1,
                        worker="bench-worker",
                        started_at_ms=at + 2,
                        ended_at_ms=at + 900,
                        exit_code=1 if tid == "load" and last is TaskState.FAILED else 0,
                    ).to_dict()
                    for tid in ("extract", "transform", "load")
                }
                cmds.append(
                    c.ReportTasks(
                        at_ms=at + 901, run_id=run_id, term=1, epoch=1, tasks=tasks, worker="bench-worker"
                    )
                )
            applied = apply_batch(kv, cmds)
            refused = [e for _, e in applied.outcomes if e is not None]
            assert not refused, refused[:3]
            kv.write(applied.writes, sync=False)
            done = min(runs, base + BATCH_RUNS)
            if done % 50_000 == 0 or done == runs:
                elapsed = time.monotonic() - started
                print(f"# filled {done} runs in {elapsed:.0f} s ({done / elapsed:.0f} runs/s)", flush=True)
        kv.write([], sync=True)
    finally:
        kv.close()


def timed(call: Callable[[], Any], n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    p99 = samples[max(0, math.ceil(0.99 * len(samples)) - 1)]
    return {"median_ms": round(statistics.median(samples), 2), "p99_ms": round(p99, 2), "calls": n}


def measure_lists(k: Standalone, dag_ids: list[str], runs: int, spacing_ms: int, calls: int) -> None:
    newest_ms = int(time.time() * 1000) - 60_000
    mid_ms = newest_ms - (runs // 2) * spacing_ms
    day = 86_400_000

    def get(path: str, **params: Any) -> dict[str, Any]:
        r = k.api("GET", path, params=params)
        assert r.status_code == 200, (path, params, r.status_code, r.text[:300])
        return r.json()  # type: ignore[no-any-return]

    deep = get("/api/v1/runs", limit=500)
    for _ in range(3):  # a cursor a few pages down
        deep = get("/api/v1/runs", limit=500, cursor=deep["nextCursor"])
    cases: dict[str, tuple[str, dict[str, Any]]] = {
        "runs newest": ("/api/v1/runs", {"limit": 50}),
        "runs by dag": ("/api/v1/runs", {"limit": 50, "dag": dag_ids[17]}),
        "runs by state FAILED": ("/api/v1/runs", {"limit": 50, "state": "FAILED"}),
        "runs by state CANCELLED": ("/api/v1/runs", {"limit": 50, "state": "CANCELLED"}),
        "runs by dag and state": ("/api/v1/runs", {"limit": 50, "dag": dag_ids[17], "state": "FAILED"}),
        "runs since/until (a day, mid-history)": (
            "/api/v1/runs",
            {"limit": 50, "since": mid_ms - day, "until": mid_ms},
        ),
        "runs by dag, state, until": (
            "/api/v1/runs",
            {"limit": 50, "dag": dag_ids[3], "state": "SUCCESS", "until": mid_ms},
        ),
        "runs page after a cursor 2000 deep": ("/api/v1/runs", {"limit": 50, "cursor": deep["nextCursor"]}),
        "runs state with no runs (RUNNING)": ("/api/v1/runs", {"limit": 50, "state": "RUNNING"}),
        "dags with lastRuns=12": ("/api/v1/dags", {"lastRuns": 12}),
        "dashboard (1 h)": ("/api/v1/dashboard", {}),
        "grid (25 runs)": (f"/api/v1/dags/{dag_ids[17]}/grid", {"limit": 25}),
    }
    for name, (path, params) in cases.items():
        body = get(path, **params)
        shown = len(body.get("runs", body.get("dags", [])))
        emit(
            {"bench": "history", "case": name, "path": path, "params": params, "items": shown, "runs": runs}
            | timed(functools.partial(get, path, **params), calls)
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--dags", type=int, default=100)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--spacing-s", type=float, default=30.0, help="creation time between runs")
    parser.add_argument("--data-dir", type=Path, help="reuse (or keep) this data dir")
    parser.add_argument("--keep", action="store_true", help="keep the data dir")
    parser.add_argument("--register-tasks", type=int, default=10_000)
    args = parser.parse_args()
    root = None if args.data_dir else Path(tempfile.mkdtemp(prefix="kiok-history-"))
    data_dir: Path = args.data_dir or Path(str(root)) / "data"
    dag_ids = [f"history_{i:03d}" for i in range(args.dags)]
    spacing_ms = int(args.spacing_s * 1000)
    try:
        if not (data_dir / "state" / "CURRENT").exists():
            k = server(data_dir).start(timeout_s=120)
            t0 = time.monotonic()
            for dag_id in dag_ids:
                k.register(dag_yaml(dag_id))
            k.stop()
            print(f"# registered {len(dag_ids)} DAGs in {time.monotonic() - t0:.1f} s", flush=True)
            t0 = time.monotonic()
            fill(data_dir, dag_ids, args.runs, spacing_ms)
            emit(
                {"bench": "history", "case": "fill", "runs": args.runs, "s": round(time.monotonic() - t0, 1)}
            )
        size = sum(p.stat().st_size for p in (data_dir / "state").rglob("*") if p.is_file())
        k = server(data_dir)
        t0 = time.monotonic()
        k.spawn()
        k.wait_ready(600)
        emit(
            {
                "bench": "history",
                "case": "restart to ready",
                "s": round(time.monotonic() - t0, 2),
                "runs": args.runs,
                "state_store_mb": round(size / 2**20),
            }
        )
        try:
            measure_lists(k, dag_ids, args.runs, spacing_ms, args.calls)
            assert k.proc is not None
            emit(
                {
                    "bench": "history",
                    "case": "master RSS after the lists",
                    "mb": round(rss_mb(k.proc.pid)),
                    "runs": args.runs,
                }
            )
            if args.register_tasks:
                text = big_dag_yaml("history_big", args.register_tasks)
                samples = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    r = k.api(
                        "POST",
                        "/api/v1/dags",
                        content=text,
                        headers={"Content-Type": "application/yaml"},
                        timeout=120,
                    )
                    samples.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 201, r.text[:300]
                emit(
                    {
                        "bench": "history",
                        "case": f"register a {args.register_tasks}-task DAG",
                        "median_ms": round(statistics.median(samples)),
                        "max_ms": round(max(samples)),
                        "bytes": len(text),
                    }
                )
        finally:
            k.stop()
    finally:
        if root is not None and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        elif args.keep:
            print(f"# data dir kept: {data_dir}", flush=True)


if __name__ == "__main__":
    main()
