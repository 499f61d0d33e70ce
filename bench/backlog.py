"""A backlog: N runs of a one-task DAG queued behind ``max_active_runs: 1``, as a backfill or
a burst of triggers leaves them. Every run's creation and end makes the leader look at every
unfinished run again (the dispatch pass, the SLA check), so what that look costs per queued
run decides whether a backlog drains in linear or quadratic time.

    .venv/bin/python -m bench.backlog [--runs 800] [--compare /path/to/other/checkout]

Triggers the runs one after another (as a client would), then waits for the last one to
end. Prints and appends to ``bench/results/backlog.jsonl`` one JSON line per version:
{"version","runs","trigger_s","drained_s","ms_per_run"} (``drained_s``: from the first
trigger to the last run's end). With ``--compare``, a standalone importing kiok from that
checkout (``PYTHONPATH``) is measured after this one.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.jsonl import RESULTS_DIR, append_result
from kiok.testing.process import Standalone

DAG = "dag: {id: q, max_active_runs: 1}\ntasks: [{id: t, script: 'true'}]\n"


def measure(runs: int, pythonpath: str | None) -> tuple[float, float]:
    """(seconds to trigger ``runs`` runs, seconds until the last one ended)."""
    env = {"KIOK_LOG_LEVEL": "WARNING", **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    with tempfile.TemporaryDirectory() as tmp:
        node = Standalone(Path(tmp) / "kiok", env).start()
        try:
            node.register(DAG)
            t0 = time.perf_counter()
            ids = [node.trigger("q") for _ in range(runs)]
            triggered = time.perf_counter() - t0
            node.wait_run(ids[-1], timeout_s=600, poll_s=0.2)
            return triggered, time.perf_counter() - t0
        finally:
            node.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=800)
    ap.add_argument("--compare", help="another kiok checkout to measure after this one")
    a = ap.parse_args()
    for version, path in {"this": None, **({"compare": a.compare} if a.compare else {})}.items():
        triggered, drained = measure(a.runs, path)
        append_result(
            RESULTS_DIR / "backlog.jsonl",
            {
                "version": version,
                "runs": a.runs,
                "trigger_s": round(triggered, 2),
                "drained_s": round(drained, 2),
                "ms_per_run": round(drained / a.runs * 1000, 2),
            },
        )


if __name__ == "__main__":
    main()
