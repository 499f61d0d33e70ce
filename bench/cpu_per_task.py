"""CPU per task of `kiok standalone` and of its task processes, for one DAG shape: a steadier
measure than wall time on a shared machine.

    .venv/bin/python bench/cpu_per_task.py [--shape fanout_1_500_1] [--runs 6] [--rounds 3]
        [--compare /path/to/other/checkout]

Reads the standalone process's own CPU time, its task spawners' (living child processes) and
the task processes' (reaped children, of the spawners or of the process itself;
``/proc/<pid>/stat``) around ``--runs`` runs of the shape. With ``--compare``, a second
standalone imports kiok from that checkout (``PYTHONPATH``) and the two alternate
``--rounds`` times, so both see the same machine load. The floor (``bench/shapes.py``: the
shape's tasks run by ``subprocess.run`` from 8 threads) is measured in the same rounds, its
own CPU and its reaped children's (``getrusage``). Prints one JSON line per version:
{"version","shape","median_wall_s","self_us_per_task","spawners_us_per_task",
"children_us_per_task","floor_cpu_ratio"} (medians over rounds), then the floor's line.
``floor_cpu_ratio`` is the floor's CPU per task over this version's: on a machine whose
cores both keep busy (these shapes on 2 cores), the most kiok's throughput can be as a share
of the floor's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
from pathlib import Path

from shapes import SHAPES, dag_yaml, floor, kiok_wall  # type: ignore[import-not-found]

from kiok.testing.process import Standalone

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[float, float]:
    """(own user+system, reaped children's user+system) seconds of process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK, (int(fields[13]) + int(fields[14])) / TICK


def _children(pid: int) -> list[int]:
    return [
        int(c)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for c in (task / "children").read_text().split()
    ]


def _spawners(pid: int) -> list[int]:
    """The task spawners: the process's living children, or with task isolation the children
    of the ``unshare`` processes it starts them through."""
    found = []
    for child in _children(pid):
        try:
            isolated = Path(f"/proc/{child}/comm").read_text().strip() == "unshare"
            found += _children(child) if isolated else [child]
        except OSError:
            continue
    return found


def cpu_s(pid: int) -> tuple[float, float, float]:
    """(process, the task spawners, task processes) CPU seconds."""
    own, kids = _stat(pid)
    spawners = 0.0
    for child in _spawners(pid):
        try:
            child_own, child_kids = _stat(child)
        except OSError:
            continue
        spawners += child_own
        kids += child_kids
    return own, spawners, kids


def measure(shape: str, runs: int, pythonpath: str | None) -> tuple[list[float], float, float, float]:
    env = {"KIOK_WORKER_TASK_SLOTS": "8", "KIOK_LOG_LEVEL": "WARNING"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    with tempfile.TemporaryDirectory() as tmp:
        node = Standalone(Path(tmp) / "kiok", env).start()
        try:
            node.register(dag_yaml("s", SHAPES[shape]))
            kiok_wall(node, "s")  # warm up
            assert node.proc is not None
            before = cpu_s(node.proc.pid)
            walls = [kiok_wall(node, "s") for _ in range(runs)]
            after = cpu_s(node.proc.pid)
        finally:
            node.stop()
    tasks = sum(len(layer) for layer in SHAPES[shape]) * runs
    own, spawners, kids = ((a - b) / tasks * 1e6 for a, b in zip(after, before, strict=True))
    return walls, own, spawners, kids


def measure_floor(shape: str, runs: int) -> tuple[list[float], float, float]:
    """The floor's walls, and its own and its task processes' CPU per task (microseconds)."""
    layers = SHAPES[shape]
    floor(layers, 8)  # warm up

    def used() -> tuple[float, float]:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime

    before = used()
    walls = [floor(layers, 8) for _ in range(runs)]
    after = used()
    tasks = sum(len(layer) for layer in layers) * runs
    return walls, (after[0] - before[0]) / tasks * 1e6, (after[1] - before[1]) / tasks * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="fanout_1_500_1", choices=sorted(SHAPES))
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compare", help="another kiok checkout to alternate with")
    a = ap.parse_args()
    versions = {"this": None, **({"compare": a.compare} if a.compare else {})}
    results: dict[str, dict[str, list[float]]] = {
        v: {"walls": [], "self": [], "spawners": [], "kids": []} for v in versions
    }
    floor_r: dict[str, list[float]] = {"walls": [], "self": [], "kids": []}
    for _ in range(a.rounds):
        for version, path in versions.items():
            walls, own, spawners, kids = measure(a.shape, a.runs, path)
            results[version]["walls"] += walls
            results[version]["self"].append(own)
            results[version]["spawners"].append(spawners)
            results[version]["kids"].append(kids)
        walls, own, kids = measure_floor(a.shape, a.runs)
        floor_r["walls"] += walls
        floor_r["self"].append(own)
        floor_r["kids"].append(kids)
    floor_us = statistics.median(floor_r["self"]) + statistics.median(floor_r["kids"])
    for version, r in results.items():
        total = sum(statistics.median(r[k]) for k in ("self", "spawners", "kids"))
        line = {
            "version": version,
            "shape": a.shape,
            "median_wall_s": round(statistics.median(r["walls"]), 3),
            "self_us_per_task": round(statistics.median(r["self"])),
            "spawners_us_per_task": round(statistics.median(r["spawners"])),
            "children_us_per_task": round(statistics.median(r["kids"])),
            "floor_cpu_ratio": round(floor_us / total, 3),
        }
        print(json.dumps(line), flush=True)
    floor_line = {
        "version": "floor",
        "shape": a.shape,
        "median_wall_s": round(statistics.median(floor_r["walls"]), 4),
        "self_us_per_task": round(statistics.median(floor_r["self"])),
        "children_us_per_task": round(statistics.median(floor_r["kids"])),
    }
    print(json.dumps(floor_line), flush=True)


if __name__ == "__main__":
    main()
