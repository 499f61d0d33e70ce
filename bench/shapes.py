"""Orchestration overhead: three DAG shapes of `true` shell tasks on `kiok standalone`,
against the floor of the same shapes run by plain subprocess calls.

    .venv/bin/python bench/shapes.py [--slots 8] [--repeat 3] [--latency-runs 30]
        [--poll-ms 50 --median] [--client lean|httpx]

Prints one JSON line per (system, shape): {"system","shape","tasks","wall_s","tasks_per_s",
"of_floor",...} (the best of --repeat, or with ``--median`` the median; floor and kiok runs
alternate), then {"system":"kiok","shape":"trigger_to_first_start",...} with the
median and p90 milliseconds from run creation to its first task's start (server clocks).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from kiok.testing.process import TERMINAL, Master, Standalone, WorkerProcess
from kiok.testing.watch import CLIENTS, RunWatcher

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


def kiok_wall(node: Standalone, dag_id: str, poll_s: float | None = None, client: str = "lean") -> float:
    """One run of ``dag_id``, timed by the server (createdAt -> endedAt). ``poll_s``: read it
    that often as a client watching it does (``kiok.testing.watch``: ``?since=`` the version it
    holds, patching its copy), with its connection open before the run; None: look only
    every 0.5 s, so as to take as little as possible from what is measured."""
    watcher = RunWatcher(node, client)
    try:
        run_id = node.trigger(dag_id)
        deadline = time.monotonic() + 600
        while True:
            time.sleep(0.5 if poll_s is None else poll_s)
            run = watcher.read(run_id, since=poll_s is not None)
            if run["state"] in TERMINAL or time.monotonic() > deadline:
                break
    finally:
        watcher.close()
    assert run["state"] == "SUCCESS", run["state"]
    return (ms(run["endedAt"]) - ms(run["createdAt"])) / 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--latency-runs", type=int, default=30)
    ap.add_argument("--cluster", action="store_true", help="1 master + 2 workers instead of standalone")
    ap.add_argument(
        "--poll-ms", type=int, default=0, help="read each run this often, as a client watching it (0: rarely)"
    )
    ap.add_argument("--median", action="store_true", help="the median of --repeat, not the best")
    ap.add_argument("--client", choices=CLIENTS, default="lean", help="the watching client's HTTP client")
    a = ap.parse_args()
    poll_s = a.poll_ms / 1000 if a.poll_ms > 0 else None
    pick = statistics.median if a.median else min
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
                    (system_name, functools.partial(kiok_wall, node, name, poll_s, a.client)),
                )
                walls: dict[str, list[float]] = {system: [] for system, _ in measures}
                for _ in range(a.repeat):  # in turn, so a change in the machine's load hits both
                    for system, measure in measures:
                        walls[system].append(measure())
                for system, _ in measures:
                    wall = pick(walls[system])
                    print(
                        json.dumps(
                            {
                                "system": system,
                                "shape": name,
                                "tasks": tasks,
                                "wall_s": round(wall, 4),
                                "tasks_per_s": round(tasks / wall, 1),
                                "runs": [round(w, 4) for w in walls[system]],
                                "of_floor": round(pick(walls["floor"]) / wall, 3),
                                "poll_ms": a.poll_ms,
                                "client": a.client,
                                "load_average": [round(x, 2) for x in os.getloadavg()],
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
