"""Per-task cost of python tasks against shell tasks (issue 18): a chain of 100 `pass` python
tasks and a chain of 100 `true` shell tasks on `kiok standalone`, timed by the server
(createdAt -> endedAt), median of --repeat; python tasks forked from the worker's python
template, and (a second standalone with kiok.worker.python.template.max.tasks=0) cold.

    .venv/bin/python bench/python_tasks.py [--tasks 100] [--repeat 3]

Prints one JSON line per (mode, task type): {"mode","type","tasks","wall_s","ms_per_task"},
then per mode {"mode","python_over_shell_ms_per_task"}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from kiok.testing.process import TERMINAL, Standalone


def ms(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def chain_yaml(dag_id: str, n: int, task_type: str, script: str) -> str:
    lines = [f"dag: {{id: {dag_id}, max_active_runs: 1}}", "tasks:"]
    for i in range(n):
        req = f", requires: [t{i - 1}]" if i else ""
        lines.append(f"  - {{id: t{i}, type: {task_type}, script: '{script}'{req}}}")
    return "\n".join(lines) + "\n"


def wall(node: Standalone, dag_id: str) -> float:
    run_id = node.trigger(dag_id)
    deadline = time.monotonic() + 600
    while True:
        time.sleep(0.5)  # rarely: reading the run costs the server time it measures
        run = node.run(run_id)
        if run["state"] in TERMINAL or time.monotonic() > deadline:
            break
    assert run["state"] == "SUCCESS", run["state"]
    return (ms(run["endedAt"]) - ms(run["createdAt"])) / 1000


def measure(mode: str, env: dict[str, str], tasks: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        node = Standalone(Path(tmp) / "kiok", env).start()
        try:
            per_task: dict[str, float] = {}
            for task_type, script in (("shell", "true"), ("python", "pass")):
                node.register(chain_yaml(f"chain_{task_type}", tasks, task_type, script))
                wall(node, f"chain_{task_type}")  # warm: spawners, template, caches
                seconds = statistics.median(wall(node, f"chain_{task_type}") for _ in range(repeat))
                per_task[task_type] = seconds * 1000 / tasks
                print(
                    json.dumps(
                        {
                            "mode": mode,
                            "type": task_type,
                            "tasks": tasks,
                            "wall_s": round(seconds, 4),
                            "ms_per_task": round(per_task[task_type], 2),
                        }
                    ),
                    flush=True,
                )
            over = per_task["python"] - per_task["shell"]
            print(json.dumps({"mode": mode, "python_over_shell_ms_per_task": round(over, 2)}), flush=True)
        finally:
            node.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    base = {"KIOK_LOG_LEVEL": "WARNING"}
    measure("template", base, a.tasks, a.repeat)
    measure("cold", {**base, "KIOK_WORKER_PYTHON_TEMPLATE_MAX_TASKS": "0"}, a.tasks, a.repeat)


if __name__ == "__main__":
    main()
