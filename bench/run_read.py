"""What reading a run costs the server (issue 18): ``GET /api/v1/runs/{id}`` of a 500-task
run, whole and with ``?since=``, and what a client polling a 1→500→1 fan-out every 50 ms
takes from its throughput.

    .venv/bin/python bench/run_read.py [--reads 1000] [--repeat 3] [--slots 8]

Server CPU is the standalone process's own CPU time (user + system, ``/proc/<pid>/stat``)
over ``--reads`` sequential GETs of a finished run, divided by the reads: it includes
HTTP parsing, authentication and the permission check, not only the view (``GET
/api/v1/me``, measured the same way, is that floor). The view's own
cost, without HTTP, is timed in this process over a store built by the real ``apply()``:
built from the store as before the cache (``run_view``), answered by the cache, and
brought up to date after one task changed.

The fan-out is timed by the server (createdAt -> endedAt), median of ``--repeat``: alone,
with a client reading the whole run every 50 ms, and with one reading ``?since=`` every
50 ms (patching its copy, as the UI and ``kiok runs status --wait`` do).

Prints one JSON line per measure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.shapes import dag_yaml, fan_out, ms
from kiok.core.states import TaskRecord, TaskState
from kiok.dag.load import compiled_spec
from kiok.master.run_cache import RunViews
from kiok.master.views import run_view
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import apply_batch
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader
from kiok.testing.process import TERMINAL, Standalone

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def emit(**record: Any) -> None:
    print(json.dumps(record), flush=True)


def wait_ended(node: Standalone, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        time.sleep(0.5)
        run = node.run(run_id)
        if run["state"] in TERMINAL:
            assert run["state"] == "SUCCESS", run["state"]
            return run
    raise TimeoutError(run_id)


class Poller(threading.Thread):
    """A client reading a run every 50 ms, whole or by ``since``, until stopped."""

    def __init__(self, node: Standalone, run_id: str, since: bool) -> None:
        super().__init__(daemon=True)
        self.node, self.run_id, self.since = node, run_id, since
        self.stop = threading.Event()
        self.reads = 0
        self.held: dict[str, Any] | None = None

    def run(self) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {self.node.token}"}, timeout=30) as http:
            url = f"{self.node.url}/api/v1/runs/{self.run_id}"
            while not self.stop.is_set():
                params = {"since": self.held["version"]} if self.since and self.held else None
                answer = http.get(url, params=params).json()
                if self.held is None or answer["full"]:
                    self.held = answer
                else:
                    self.held = {**answer, "tasks": {**self.held["tasks"], **answer["tasks"]}}
                self.reads += 1
                self.stop.wait(0.05)


def fan_out_wall(node: Standalone, poll: str) -> tuple[float, int]:
    """One fan-out run timed by the server; ``poll``: "", "full" or "since". Returns the
    seconds and the reads the poller made."""
    run_id = node.trigger("fanout_1_500_1")
    poller = Poller(node, run_id, since=poll == "since") if poll else None
    if poller:
        poller.start()
    run = wait_ended(node, run_id)
    if poller:
        poller.stop.set()
        poller.join()
        assert poller.held is not None
    return (ms(run["endedAt"]) - ms(run["createdAt"])) / 1000, poller.reads if poller else 0


def server_cpu_per_get(node: Standalone, path: str, reads: int, params: dict[str, Any] | None) -> float:
    assert node.proc is not None
    with httpx.Client(headers={"Authorization": f"Bearer {node.token}"}, timeout=30) as http:
        url = f"{node.url}{path}"
        for _ in range(20):  # warm: connection, cache
            http.get(url, params=params).raise_for_status()
        before = cpu_s(node.proc.pid)
        for _ in range(reads):
            http.get(url, params=params)
        return (cpu_s(node.proc.pid) - before) / reads * 1000


def in_process(reads: int) -> None:
    """The view alone: before the cache (``run_view`` over ``reader.run``), a cache hit,
    and the cache brought up to date after one task changed, on a 500-task run."""
    kv = MemoryKV(keys.SPACES)
    reader = StateReader(kv)
    spec_doc = _spec_doc()

    def apply(*cmds: c.Command) -> None:
        applied = apply_batch(kv, list(cmds))
        kv.write(applied.writes, sync=False)

    apply(c.RegisterDag(at_ms=1, spec=spec_doc))
    apply(c.CreateRun(at_ms=2, dag_id="fanout_1_500_1"))
    run_id = "fanout_1_500_1-2-1"
    apply(c.AssignRun(at_ms=3, run_id=run_id, worker="w", term=1))
    now = [10]
    done = TaskRecord(TaskState.SUCCESS, 1, 5, 9, 0, None, "w").to_dict()
    running = TaskRecord(TaskState.RUNNING, 1, 5, None, None, None, "w").to_dict()
    fan = [f"f{i}" for i in range(500)]
    apply(c.ReportTasks(at_ms=4, run_id=run_id, term=1, epoch=1, tasks={"start": done}, worker="w"))
    apply(c.ReportTasks(at_ms=5, run_id=run_id, term=1, epoch=1, tasks={t: running for t in fan}, worker="w"))
    spec = compiled_spec(spec_doc)
    views = RunViews(reader, lambda _: spec, lambda _: None, lambda: now[0])

    def timed(fn: Any, n: int) -> float:
        t0 = time.process_time()
        for _ in range(n):
            fn()
        return (time.process_time() - t0) / n * 1000

    n = max(20, reads // 10)

    def uncached() -> None:
        run = reader.run(run_id)
        assert run is not None
        json.dumps(run_view(run, spec, None, now[0]))

    before = timed(uncached, n)
    views.read(run_id)
    hit = timed(lambda: views.read(run_id), reads)
    version = json.loads(views.read(run_id))["version"]
    since = timed(lambda: views.read(run_id, version), reads)
    i = [0]
    last = [version]

    def one_change() -> None:
        """One fan-out task reports a new attempt (noting the version read before it)."""
        header = reader.run_header(run_id)
        assert header is not None
        last[0] = header["version"]
        i[0] += 1
        t = fan[i[0] % 500]
        rec = TaskRecord(TaskState.RUNNING, 1 + i[0], 5, None, None, None, "w").to_dict()
        apply(c.ReportTasks(at_ms=6, run_id=run_id, term=1, epoch=1, tasks={t: rec}, worker="w"))

    apply_cost = timed(one_change, n)

    def change_then(since: bool) -> Callable[[], None]:
        def go() -> None:
            one_change()
            views.read(run_id, last[0] if since else None)

        return go

    after_since = timed(change_then(True), n) - apply_cost
    after_whole = timed(change_then(False), n) - apply_cost
    emit(
        measure="view_cpu_ms_500_tasks",
        before_cache=round(before, 3),
        cache_hit=round(hit, 4),
        since_nothing_changed=round(since, 4),
        one_task_changed_since=round(after_since, 3),
        one_task_changed_whole=round(after_whole, 3),
    )


def _spec_doc() -> dict[str, Any]:
    tasks: list[dict[str, Any]] = [{"id": "start", "script": "true"}]
    tasks += [{"id": f"f{i}", "script": "true", "requires": ["start"]} for i in range(500)]
    tasks.append({"id": "end", "script": "true", "requires": [f"f{i}" for i in range(500)]})
    return {"dag": {"id": "fanout_1_500_1", "max_active_runs": 1}, "tasks": tasks}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reads", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--slots", type=int, default=8)
    a = ap.parse_args()
    in_process(a.reads)
    with tempfile.TemporaryDirectory() as tmp:
        env = {"KIOK_WORKER_TASK_SLOTS": str(a.slots), "KIOK_LOG_LEVEL": "WARNING"}
        node = Standalone(Path(tmp) / "kiok", env).start()
        try:
            node.register(dag_yaml("fanout_1_500_1", fan_out(500)))
            run_id = node.trigger("fanout_1_500_1")
            version = wait_ended(node, run_id)["version"]
            reads: tuple[tuple[str, str, dict[str, Any] | None], ...] = (
                ("whole", f"/api/v1/runs/{run_id}", None),
                ("since_nothing_changed", f"/api/v1/runs/{run_id}", {"since": version}),
                ("floor: GET /api/v1/me", "/api/v1/me", None),  # HTTP + authentication alone
            )
            for name, path, params in reads:
                cost = server_cpu_per_get(node, path, a.reads, params)
                emit(measure="server_cpu_ms_per_get", read=name, tasks=502, reads=a.reads, ms=round(cost, 3))
            walls: dict[str, float] = {}
            for poll in ("", "full", "since"):
                results = [fan_out_wall(node, poll) for _ in range(a.repeat)]
                walls[poll] = statistics.median(w for w, _ in results)
                emit(
                    measure="fanout_1_500_1_wall_s",
                    poll=poll or "none",
                    median_s=round(walls[poll], 4),
                    runs=[round(w, 4) for w, _ in results],
                    reads_per_run=[r for _, r in results],
                )
            for poll in ("full", "since"):
                emit(
                    measure="fanout_throughput_cost_of_polling",
                    poll=poll,
                    throughput_ratio=round(walls[""] / walls[poll], 3),
                    cost_pct=round((1 - walls[""] / walls[poll]) * 100, 1),
                )
        finally:
            node.stop()


if __name__ == "__main__":
    main()
