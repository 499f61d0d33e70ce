"""Orchestration overhead: three DAG shapes of `true` shell tasks on `kiok standalone`,
against the floor of the same shapes run by plain subprocess calls.

    .venv/bin/python bench/shapes.py [--slots 8] [--repeat 3] [--latency-runs 30]

Prints one JSON line per (system, shape): {"system","shape","tasks","wall_s","tasks_per_s"}
(the best of --repeat), then {"system":"kiok","shape":"trigger_to_first_start",...} with the
median and p90 milliseconds from run creation to its first task's start (server clocks).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from kiok.testing.process import TERMINAL, Master, Standalone, WorkerProcess

TRUE = ["/bin/sh", "-c", "true"]


def chain(n: int) -> list[list[str]]:
    """Layers of task ids: each task requires every task of the layer before."""
    return [[f"c{i}"] for i in range(n)]


def fan_out(width: int) -> list[list[str]]:
    return [["start"], [f"f{i}" for i in range(width)], ["end"]]


def diamond(layers: int, width: int) -> list[list[str]]:
    return [[f"l{i}_{j}" for j in range(width)] for i in range(layers)]


SHAPES = {"chain_100": chain(100), "fanout_1_500_1": fan_out(500), "diamond_10x20": diamond(10, 20)}


def dag_yaml(dag_id: str, layers: list[list[str]]) -> str:
    lines = [f"dag: {{id: {dag_id}, max_active_runs: 1}}", "tasks:"]
    previous: list[str] = []
    for layer in layers:
        for tid in layer:
            req = f", requires: [{', '.join(previous)}]" if previous else ""
            lines.append(f"  - {{id: {tid}, script: 'true'{req}}}")
        previous = layer
    return "\n".join(lines) + "\n"


def floor(layers: list[list[str]], slots: int) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(slots) as pool:
        for layer in layers:
            list(pool.map(lambda _: subprocess.run(TRUE, check=True), layer))
    return time.perf_counter() - t0


def ms(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def kiok_wall(node: Standalone, dag_id: str) -> float:
    run_id = node.trigger(dag_id)
    # Server clocks time the run; the bench only looks, rarely and never at once, since
    # reading a 500-task run costs the server some milliseconds of the time it measures.
    deadline = time.monotonic() + 600
    while True:
        time.sleep(0.5)
        run = node.run(run_id)
        if run["state"] in TERMINAL or time.monotonic() > deadline:
            break
    assert run["state"] == "SUCCESS", run["state"]
    return (ms(run["endedAt"]) - ms(run["createdAt"])) / 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--latency-runs", type=int, default=30)
    ap.add_argument("--cluster", action="store_true", help="1 master + 2 workers instead of standalone")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"KIOK_WORKER_TASK_SLOTS": str(a.slots), "KIOK_LOG_LEVEL": "WARNING"}
        processes: list[Standalone] = []
        if a.cluster:
            master = Master(Path(tmp) / "master", env).start()
            processes.append(master)
            for wid in ("w1", "w2"):
                token = master.join_token()
                worker_env = {**env, "KIOK_WORKER_JOIN_TOKEN": token}
                processes.append(
                    WorkerProcess(Path(tmp) / wid, master.internal_address, wid, worker_env).start()
                )
            master.wait_open()
            node: Standalone = master
        else:
            node = Standalone(Path(tmp) / "kiok", env).start()
            processes.append(node)
        system_name = "kiok-cluster" if a.cluster else "kiok"
        try:
            for name, layers in SHAPES.items():
                tasks = sum(len(x) for x in layers)
                node.register(dag_yaml(name, layers))
                measures: tuple[tuple[str, Callable[[], float]], ...] = (
                    ("floor", functools.partial(floor, layers, a.slots)),
                    (system_name, functools.partial(kiok_wall, node, name)),
                )
                for system, measure in measures:
                    wall = min(measure() for _ in range(a.repeat))
                    print(
                        json.dumps(
                            {
                                "system": system,
                                "shape": name,
                                "tasks": tasks,
                                "wall_s": round(wall, 4),
                                "tasks_per_s": round(tasks / wall, 1),
                            }
                        ),
                        flush=True,
                    )
            node.register("dag: {id: single}\ntasks: [{id: t, script: 'true'}]\n")
            lat = []
            for _ in range(a.latency_runs):
                run = node.wait_run(node.trigger("single"))
                lat.append(ms(run["tasks"]["t"]["startedAt"]) - ms(run["createdAt"]))
            lat.sort()
            print(
                json.dumps(
                    {
                        "system": system_name,
                        "shape": "trigger_to_first_start",
                        "runs": len(lat),
                        "median_ms": statistics.median(lat),
                        "p90_ms": lat[int(len(lat) * 0.9) - 1],
                    }
                ),
                flush=True,
            )
        finally:
            for process in reversed(processes):
                process.stop()


if __name__ == "__main__":
    main()
