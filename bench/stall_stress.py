"""Many runs of one shape on one ``kiok standalone``, each polled every 50 ms as a client
watching it does, until one stalls: what found the spawner's lost wake-up (a run whose task
stayed RUNNING after its process had ended, once in 100-1,200 diamond runs).

    .venv/bin/python -m bench.stall_stress [--shape diamond_10x20] [--runs 3000] [--stall-s 20]

A run that has not ended ``--stall-s`` after its trigger is a stall: its unfinished tasks,
the data dir (its ``kiok.log``) and the process tree are printed, the standalone is kept
running for inspection (its worker's ``/status`` shows the slots it holds) until Ctrl-C,
and the exit status is 1. Otherwise prints ``{"runs": N, "stalls": 0, ...}`` and exits 0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.shapes import SHAPES, dag_yaml
from kiok.testing.process import TERMINAL, Standalone
from kiok.testing.watch import RunWatcher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="diamond_10x20")
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--stall-s", type=float, default=20.0)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="kiok-stall-")) / "kiok"
    node = Standalone(data, {"KIOK_WORKER_TASK_SLOTS": "8"}).start()
    started = time.monotonic()
    try:
        node.register(dag_yaml("stress", SHAPES[args.shape]))
        watcher = RunWatcher(node, "httpx")
        try:
            for i in range(args.runs):
                run_id = node.trigger("stress")
                deadline = time.monotonic() + args.stall_s
                while True:
                    time.sleep(0.05)
                    run = watcher.read(run_id, since=False)
                    if run["state"] in TERMINAL:
                        break
                    if time.monotonic() > deadline:
                        open_tasks = {
                            t: r for t, r in run["tasks"].items() if r["state"] not in ("SUCCESS", "PENDING")
                        }
                        print(json.dumps({"stall_after_runs": i, "run": run_id, "tasks": open_tasks}))
                        print(f"data dir {data.parent} (kiok.log); kept running until Ctrl-C")
                        tree = subprocess.run(
                            ["ps", "-eo", "pid,ppid,stat,wchan:24,cmd", "--forest"],
                            text=True,
                            capture_output=True,
                        )
                        print(tree.stdout[-4000:])
                        try:
                            while True:
                                time.sleep(60)
                        except KeyboardInterrupt:
                            sys.exit(1)
        finally:
            watcher.close()
        print(
            json.dumps(
                {
                    "shape": args.shape,
                    "runs": args.runs,
                    "stalls": 0,
                    "seconds": round(time.monotonic() - started, 1),
                }
            )
        )
    finally:
        node.stop()


if __name__ == "__main__":
    main()
