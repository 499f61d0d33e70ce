"""The retention sweep deleting 100,000 runs while the API answers.

    .venv/bin/python -m bench.retention_sweep --data-dir DIR [--delete 100000] [--calls 50]

``DIR`` is a stopped master's data dir filled by ``bench/history.py --keep`` (its runs are
numbered 1, 2, ... oldest first, ``--spacing-s`` apart). **The sweep deletes runs from it.**

1. ``kiok standalone`` on ``DIR`` without retention: the lists below are called ``--calls``
   times each (p50/p99 without a sweep); the creation time of run ``--delete`` + 1 is read.
2. Restarted with ``kiok.retention.runs.days`` set so that the ``--delete`` oldest runs are
   past it (and a sweep interval of 1 s): from ready, the lists are called round after round
   until the oldest ``--delete`` runs are gone. The sweep's duration (ready to done) and the
   lists' p50/p99 during it are recorded.

One JSON line per measurement on stdout and in bench/results/retention_sweep.jsonl.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.jsonl import append_result
from kiok.testing.process import Standalone

MASTER_KEY = "history-bench-master-key-0123456789abcdef"  # as bench/history.py
RESULTS = Path(__file__).parent / "results" / "retention_sweep.jsonl"
LISTS: dict[str, tuple[str, dict[str, Any]]] = {
    "runs newest": ("/api/v1/runs", {"limit": 50}),
    "runs by state FAILED": ("/api/v1/runs", {"limit": 50, "state": "FAILED"}),
    "dags with lastRuns=12": ("/api/v1/dags", {"lastRuns": 12}),
}


def emit(record: dict[str, Any]) -> None:
    append_result(RESULTS, record)


def server(data_dir: Path, extra: dict[str, str]) -> Standalone:
    env = {"KIOK_MASTER_KEY": MASTER_KEY, "KIOK_WORKER_TASK_ISOLATION": "none", **extra}
    return Standalone(data_dir, env)


def percentiles(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    p99 = s[max(0, math.ceil(0.99 * len(s)) - 1)]
    return {"median_ms": round(statistics.median(s), 2), "p99_ms": round(p99, 2), "calls": len(s)}


def call(k: Standalone, path: str, params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    r = k.api("GET", path, params=params)
    ms = (time.perf_counter() - t0) * 1000
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return ms, r.json()


def run_at_seq(k: Standalone, seq: int) -> dict[str, Any] | None:
    """The run numbered ``seq`` (a run id ends in its number; a cursor lists the runs below
    it), None once deleted."""
    _, body = call(k, "/api/v1/runs", {"limit": 1, "cursor": str(seq + 1)})
    runs = body["runs"]
    return runs[0] if runs and int(runs[0]["runId"].rsplit("-", 1)[1]) == seq else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--delete", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()

    k = server(args.data_dir, {})
    k.spawn()
    k.wait_ready(600)
    try:
        for path, params in LISTS.values():  # warm up (the first calls after a start are slow)
            call(k, path, params)
        for name, (path, params) in LISTS.items():
            emit(
                {"bench": "retention_sweep", "case": f"{name}, no sweep"}
                | percentiles([call(k, path, params)[0] for _ in range(args.calls)])
            )
        last = run_at_seq(k, args.delete)
        first_kept = run_at_seq(k, args.delete + 1)
        assert last is not None and first_kept is not None, "fewer runs in the store than --delete"
    finally:
        k.stop()

    # past the last run to delete, before the first to keep (their ages grow as we go)
    cutoff_ms = (_ms(last["createdAt"]) + _ms(first_kept["createdAt"])) // 2
    days = (time.time() * 1000 - cutoff_ms) / 86_400_000
    k = server(
        args.data_dir,
        {"KIOK_RETENTION_RUNS_DAYS": f"{days:.6f}", "KIOK_RETENTION_SWEEP_INTERVAL_MS": "1000"},
    )
    k.spawn()
    k.wait_ready(600)
    started = time.monotonic()
    for path, params in LISTS.values():  # warm up, as before (the sweep has started)
        call(k, path, params)
    during: dict[str, list[float]] = {name: [] for name in LISTS}
    try:
        while True:
            for name, (path, params) in LISTS.items():
                during[name].append(call(k, path, params)[0])
            if not call(k, "/api/v1/runs", {"limit": 1, "cursor": str(args.delete + 1)})[1]["runs"]:
                break  # no run numbered up to --delete is left
            assert time.monotonic() - started < 3600, "the sweep did not finish in an hour"
        swept_s = time.monotonic() - started
        assert run_at_seq(k, args.delete + 1) is not None, "the sweep deleted a run it should keep"
        emit(
            {
                "bench": "retention_sweep",
                "case": "sweep",
                "runs_deleted": args.delete,
                "retention_days": round(days, 3),
                "s": round(swept_s, 1),
                "runs_per_s": round(args.delete / swept_s),
            }
        )
        for name, samples in during.items():
            emit({"bench": "retention_sweep", "case": f"{name}, during the sweep"} | percentiles(samples))
    finally:
        k.stop()


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


if __name__ == "__main__":
    main()
