"""What reading a run costs the server (issue 18): ``GET /api/v1/runs/{id}`` of a 500-task
run, whole and with ``?since=``, and what a client polling a 1→500→1 fan-out every 50 ms
takes from its throughput.

    .venv/bin/python -m bench.run_read [--reads 1000] [--repeat 3] [--slots 8] [--pin-client]
        [--poll-only] [--client lean|httpx]

Server CPU is the standalone process's own CPU time (user + system, ``/proc/<pid>/stat``)
over ``--reads`` sequential GETs of a finished run, divided by the reads: it includes
HTTP parsing, authentication and the permission check, not only the view (``GET
/api/v1/me``, measured the same way, is that floor). The view's own
cost, without HTTP, is timed in this process over a store built by the real ``apply()``:
built from the store as before the cache (``run_view``), answered by the cache, and
brought up to date after one task changed; and per read of the fan-out in flight, replayed
through ``apply()`` (``in_flight``: what a polling client's reads cost the view alone).

The fan-out is timed by the server (createdAt -> endedAt), median of ``--repeat``: alone,
with a client reading the whole run every 50 ms, and with one reading ``?since=`` every
50 ms (patching its copy, as the UI and ``kiok runs status --wait`` do). The three take
turns, so that a change in the machine's load hits them alike. The client's HTTP client is
made before the run (making one costs ~30 ms of CPU, which an earlier version of this bench
charged to the run); the server's CPU over each run and the client's own are reported per
read, since on a shared 2-core machine the client's CPU is taken from the run too.
``--pin-client`` keeps the client on CPU 1; ``--poll-only`` skips the other measures;
``--client`` picks the polling client's HTTP client (``kiok.testing.watch``: ``lean``, the
default, or ``httpx``, whose own CPU per read is several times the server's).

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
from dataclasses import dataclass
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
from kiok.testing.watch import CLIENTS, RunWatcher

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """CPU seconds of process ``pid``: the sum of its threads' time on a CPU
    (``/proc/<pid>/task/*/schedstat``, in nanoseconds; ``/proc/<pid>/stat`` counts in 10 ms
    ticks, as coarse as what a run's reads add to it)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended meanwhile
    return total / 1e9


def machine_busy_s() -> float:
    """CPU seconds every process on the machine has used (``/proc/stat``: all but idle and
    iowait), so that a run's whole cost (the kiok process, its spawners and task processes,
    the polling client) is counted, not only the kiok process's."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / TICKS


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
    """A client reading a run every 50 ms, whole or by ``since``, until it has ended or is
    stopped, with the HTTP ``client`` named (``kiok.testing.watch``); ``cpu_s`` is its own
    thread's CPU over the run."""

    def __init__(self, node: Standalone, since: bool, client: str) -> None:
        super().__init__(daemon=True)
        self.since = since
        self.run_id = ""
        self.stop = threading.Event()
        self.reads = 0
        self.cpu_s = 0.0
        self.held: dict[str, Any] | None = None
        self.watcher = RunWatcher(node, client)

    def run(self) -> None:
        started = time.thread_time()
        try:
            while not self.stop.is_set():
                self.held = self.watcher.read(self.run_id, since=self.since)
                self.reads += 1
                if self.held["state"] in TERMINAL:
                    break  # as a watching client does: the reads counted are of the run in flight
                self.stop.wait(0.05)
        finally:
            self.watcher.close()
        self.cpu_s = time.thread_time() - started


@dataclass(frozen=True)
class Polled:
    """One fan-out run: its wall time (server clocks), the server process's CPU over it,
    and what the poller did."""

    wall_s: float
    server_cpu_s: float
    reads: int
    poller_cpu_s: float
    machine_cpu_s: float


def fan_out_wall(node: Standalone, poll: str, client: str) -> Polled:
    """One fan-out run timed by the server; ``poll``: "", "full" or "since"."""
    assert node.proc is not None
    poller = Poller(node, since=poll == "since", client=client) if poll else None
    cpu, busy = cpu_s(node.proc.pid), machine_busy_s()
    run_id = node.trigger("fanout_1_500_1")
    if poller:
        poller.run_id = run_id
        poller.start()
    run = wait_ended(node, run_id)
    cpu, busy = cpu_s(node.proc.pid) - cpu, machine_busy_s() - busy
    if poller:
        poller.stop.set()
        poller.join()
        assert poller.held is not None
    return Polled(
        wall_s=(ms(run["endedAt"]) - ms(run["createdAt"])) / 1000,
        server_cpu_s=cpu,
        reads=poller.reads if poller else 0,
        poller_cpu_s=poller.cpu_s if poller else 0.0,
        machine_cpu_s=busy,
    )


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


def in_flight(repeat: int, every: int = 7) -> None:
    """The view's CPU per read of the fan-out in flight, in process (no HTTP): the run is
    replayed through the real ``apply()`` (``start``, then the 500 in groups of 8 as a
    driver with 8 slots reports them, each group RUNNING then SUCCESS, then ``end``) and
    read every ``every`` reports from its creation on, about as often as a client polling
    every 50 ms reads the real run (~20 reads); the first read (the cache entry built) and
    ``start`` ending (all 500 shown QUEUED) are among them. Best of ``repeat``."""
    spec_doc = _spec_doc()
    spec = compiled_spec(spec_doc)
    running = TaskRecord(TaskState.RUNNING, 1, 5, None, None, None, "w").to_dict()
    done = TaskRecord(TaskState.SUCCESS, 1, 5, 9, 0, None, "w").to_dict()
    fan = [f"f{i}" for i in range(500)]
    groups = [["start"]] + [fan[i : i + 8] for i in range(0, 500, 8)] + [["end"]]
    run_id = "fanout_1_500_1-2-1"

    def one(since: bool) -> tuple[float, int]:
        kv = MemoryKV(keys.SPACES)
        reader = StateReader(kv)

        views = RunViews(reader, lambda _: spec, lambda _: None, lambda: 10)

        def apply(cmd: c.Command) -> None:
            applied = apply_batch(kv, [cmd])
            kv.write(applied.writes, sync=False)
            views.on_effects(applied.effects)  # as the master does, once the batch is durable

        apply(c.RegisterDag(at_ms=1, spec=spec_doc))
        apply(c.CreateRun(at_ms=2, dag_id="fanout_1_500_1"))
        steps: list[c.Command] = [c.AssignRun(at_ms=3, run_id=run_id, worker="w", term=1)]
        for group in groups:
            for rec in (running, done):
                steps.append(
                    c.ReportTasks(
                        at_ms=4, run_id=run_id, term=1, epoch=1, tasks={t: rec for t in group}, worker="w"
                    )
                )
        held: int | None = None
        cpu, reads = 0.0, 0
        for k, cmd in enumerate(steps):
            apply(cmd)
            if k % every == 0 or k == len(steps) - 1:
                t0 = time.thread_time()
                body = views.read(run_id, held if since else None)
                cpu += time.thread_time() - t0
                reads += 1
                held = json.loads(body)["version"]
        return cpu / reads * 1000, reads

    for since in (False, True):
        best = min(one(since) for _ in range(repeat))
        emit(
            measure="view_cpu_ms_per_read_in_flight",
            read="since" if since else "whole",
            reads_per_run=best[1],
            ms=round(best[0], 3),
            load_average=[round(x, 2) for x in os.getloadavg()],
        )


def fan_out_polled(node: Standalone, repeat: int, pinned: bool, client: str) -> None:
    """The fan-out alone, polled whole and polled by ``since``, interleaved (one of each in
    turn, after a warm-up run) so that a change in the machine's load hits them alike;
    medians of ``repeat``."""
    fan_out_wall(node, "", client)
    modes = ("", "full", "since")
    results: dict[str, list[Polled]] = {m: [] for m in modes}
    for _ in range(repeat):
        for poll in modes:
            results[poll].append(fan_out_wall(node, poll, client))
    alone = results[""]
    wall_alone = statistics.median(r.wall_s for r in alone)
    cpu_alone = statistics.median(r.server_cpu_s for r in alone)
    machine_alone = statistics.median(r.machine_cpu_s for r in alone)
    for poll in modes:
        rs = results[poll]
        wall = statistics.median(r.wall_s for r in rs)
        reads = sum(r.reads for r in rs)
        record: dict[str, Any] = dict(
            measure="fanout_1_500_1_polled",
            poll=poll or "none",
            client=client,
            client_pinned=pinned,
            median_wall_s=round(wall, 4),
            runs=[round(r.wall_s, 4) for r in rs],
            median_server_cpu_s=round(statistics.median(r.server_cpu_s for r in rs), 4),
            median_machine_cpu_s=round(statistics.median(r.machine_cpu_s for r in rs), 4),
            reads_per_run=[r.reads for r in rs],
            load_average=[round(x, 2) for x in os.getloadavg()],
        )
        if poll:
            # The server CPU a read added, and the client's own, per read. The run is bound
            # by the machine's CPU, so what the reads add to it, against all the CPU an
            # unwatched run takes, is their share of its throughput: a steadier estimate
            # than the walls' ratio, which moves by several points between runs.
            added = sum(r.server_cpu_s for r in rs) - cpu_alone * len(rs)
            client_cpu = sum(r.poller_cpu_s for r in rs)
            record.update(
                server_cpu_ms_per_read=round(added / max(reads, 1) * 1000, 3),
                client_cpu_ms_per_read=round(client_cpu / max(reads, 1) * 1000, 3),
                throughput_ratio=round(wall_alone / wall, 3),
                cost_pct=round((1 - wall_alone / wall) * 100, 1),
                cpu_cost_pct=round((added + client_cpu) / (machine_alone * len(rs)) * 100, 2),
                server_cpu_cost_pct=round(added / (machine_alone * len(rs)) * 100, 2),
            )
        emit(**record)


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
    ap.add_argument("--pin-client", action="store_true", help="run the polling client on CPU 1 only")
    ap.add_argument("--poll-only", action="store_true", help="only the polled fan-out")
    ap.add_argument("--client", choices=CLIENTS, default="lean", help="the polling client's HTTP client")
    a = ap.parse_args()
    if not a.poll_only:
        in_process(a.reads)
        in_flight(max(a.repeat, 5))
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
            for name, path, params in reads if not a.poll_only else ():
                cost = server_cpu_per_get(node, path, a.reads, params)
                emit(measure="server_cpu_ms_per_get", read=name, tasks=502, reads=a.reads, ms=round(cost, 3))
            if a.pin_client:
                # The polling client on CPU 1 only; the server keeps both (it was started
                # before): the client then competes with the server for one core, not two.
                os.sched_setaffinity(0, {1})
            fan_out_polled(node, a.repeat, a.pin_client, a.client)
        finally:
            node.stop()


if __name__ == "__main__":
    main()
