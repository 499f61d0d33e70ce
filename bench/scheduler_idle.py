"""What many scheduled DAGs cost `kiok standalone` when nothing is due: the process's CPU
while idle, and the wall time to register them (each registration wakes the scheduler).

    .venv/bin/python bench/scheduler_idle.py [--dags 500] [--tasks 50] [--idle-s 10]
        [--pythonpath /path/to/other/kiok]

Registers ``--dags`` DAGs of a ``--tasks``-task chain, each on a daily cron in a named zone
(so none is due), then reads the process's own CPU time (``/proc/<pid>/stat``) over
``--idle-s`` seconds. With ``--pythonpath`` the standalone imports kiok from there (another
checkout, e.g. ``git archive`` of an older commit), to compare on the same machine. Prints one
JSON line: {"dags","tasks","register_s","idle_cpu_pct"}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from cpu_per_task import _stat  # type: ignore[import-not-found]

from kiok.testing.process import Standalone


def chain_dag(dag_id: str, tasks: int) -> str:
    lines = [f"dag: {{id: {dag_id}, schedule: '0 3 * * *', timezone: Europe/Paris}}", "tasks:"]
    for j in range(tasks):
        requires = f", requires: [t{j - 1}]" if j else ""
        lines.append(f"  - {{id: t{j}, script: 'echo {j}'{requires}}}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dags", type=int, default=500)
    ap.add_argument("--tasks", type=int, default=50)
    ap.add_argument("--idle-s", type=float, default=10.0)
    ap.add_argument("--pythonpath", help="import kiok from this directory instead")
    a = ap.parse_args()
    env = {"KIOK_LOG_LEVEL": "WARNING", **({"PYTHONPATH": a.pythonpath} if a.pythonpath else {})}
    with tempfile.TemporaryDirectory() as tmp:
        node = Standalone(Path(tmp) / "kiok", env).start()
        try:
            t0 = time.perf_counter()
            for i in range(a.dags):
                node.register(chain_dag(f"d{i}", a.tasks))
            register_s = time.perf_counter() - t0
            time.sleep(3)  # registration's last ticks and compactions settle
            assert node.proc is not None
            before = _stat(node.proc.pid)[0]
            time.sleep(a.idle_s)
            used = _stat(node.proc.pid)[0] - before
        finally:
            node.stop()
    print(
        json.dumps(
            {
                "dags": a.dags,
                "tasks": a.tasks,
                "register_s": round(register_s, 2),
                "idle_cpu_pct": round(used / a.idle_s * 100, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
