"""Process control for the chaos soak: 3 ``kiok master`` and 3 ``kiok worker`` processes on
127.0.0.1, the DAGs whose tasks write the ledger, a client that retries writes through
failovers, and the fault injector (kill -9 of workers and of the leader, SIGSTOP of a worker).
Conclusions are drawn elsewhere (``analysis.py``); this module only acts and records."""

from __future__ import annotations

import heapq
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.chaos.analysis import Fault, FaultKind
from kiok.testing.process import ADMIN_PASSWORD, Master, MasterGroup, WorkerProcess

WORKERS = ("w1", "w2", "w3")


def task_script(ledger: Path, *, fail_first: bool = False) -> str:
    """Shell for one task: a ledger line at start and at end (``analysis.parse_ledger``), two
    known stdout lines (``analysis.expected_task_lines``) around a short sleep. ``fail_first``:
    attempt 1 fails (the task has retries). ``CHAOS_WORKER`` comes from the worker's environment."""
    who = '"$KIOK_RUN_ID $KIOK_TASK_ID $KIOK_ATTEMPT $CHAOS_WORKER'
    out = '"chaos-out $KIOK_RUN_ID $KIOK_TASK_ID $KIOK_ATTEMPT'
    lines = [
        f'echo {who} start $(date +%s.%N)" >> {ledger}',
        f'echo {out} begin"',
        "sleep 0.5",
    ]
    if fail_first:
        lines.append(
            f'if [ "$KIOK_ATTEMPT" = 1 ]; then echo {who} fail $(date +%s.%N)" >> {ledger}; exit 1; fi'
        )
    lines += [f'echo {out} end"', f'echo {who} ok $(date +%s.%N)" >> {ledger}']
    return "\n".join(lines)


def dag_yaml(
    dag_id: str, tasks: list[tuple[str, list[str]]], ledger: Path, flaky: frozenset[str] = frozenset()
) -> str:
    out = [f"dag: {{id: {dag_id}}}", "tasks:"]
    for tid, requires in tasks:
        out.append(f"  - id: {tid}")
        if requires:
            out.append(f"    requires: [{', '.join(requires)}]")
        if tid in flaky:
            out += ["    retries: 3", "    retry_delay: 1s", "    retry_exponential_backoff: false"]
        out.append("    script: |")
        out += [f"      {line}" for line in task_script(ledger, fail_first=tid in flaky).splitlines()]
    return "\n".join(out) + "\n"


def dags(ledger: Path) -> dict[str, str]:
    """The mixed DAGs: a chain of 5, a diamond 1→3→1, a fan-out 1→8→1, a task with retries."""
    fan = [f"f{i}" for i in range(1, 9)]
    mid = ["d_a", "d_b", "d_c"]
    shapes: dict[str, tuple[list[tuple[str, list[str]]], frozenset[str]]] = {
        "chaos_chain": ([(f"c{i}", [f"c{i - 1}"] if i > 1 else []) for i in range(1, 6)], frozenset()),
        "chaos_diamond": ([("d_top", []), *[(m, ["d_top"]) for m in mid], ("d_bottom", mid)], frozenset()),
        "chaos_fanout": ([("f_src", []), *[(f, ["f_src"]) for f in fan], ("f_sink", fan)], frozenset()),
        "chaos_retry": ([("r_flaky", []), ("r_after", ["r_flaky"])], frozenset({"r_flaky"})),
    }
    return {dag_id: dag_yaml(dag_id, tasks, ledger, flaky) for dag_id, (tasks, flaky) in shapes.items()}


class Cluster:
    """The 6 processes, which of them are down, and a retrying API client over the masters."""

    def __init__(self, root: Path, hb_timeout_ms: int, rng: random.Random) -> None:
        self.rng = rng  # which master a request goes to
        self.env = {"KIOK_WORKER_HEARTBEAT_TIMEOUT_MS": str(hb_timeout_ms)}
        self.group = MasterGroup(root, extra_env=self.env)
        self.masters = self.group.masters
        self.workers: dict[str, WorkerProcess] = {}
        self.root = root
        self.down: set[str] = set()  # process ids killed, stopped or restarting
        self.lock = threading.Lock()
        self._token: str | None = None

    def start(self, ledger: Path) -> None:
        self.group.start()
        leader = self.group.leader(timeout_s=60)
        for wid in WORKERS:
            env = {
                **self.env,
                "KIOK_WORKER_JOIN_TOKEN": leader.join_token(),
                "KIOK_WORKER_SHUTDOWN_DRAIN_TIMEOUT_SECONDS": "5",
                "CHAOS_WORKER": wid,
            }
            self.workers[wid] = WorkerProcess(self.root / wid, self.group.workers_address, wid, env).start(60)
        leader.wait_open(60)
        for text in dags(ledger).values():
            leader.register(text)

    def stop(self) -> None:
        for w in self.workers.values():
            if w.proc is not None and w.proc.poll() is None:
                w.signal(signal.SIGCONT)
                w.stop()
        self.group.stop()

    def up(self, pid: str) -> bool:
        with self.lock:
            return pid not in self.down

    def live_masters(self) -> list[tuple[str, Master]]:
        return [(mid, m) for mid, m in self.masters.items() if self.up(mid)]

    def health(self, mid: str) -> dict[str, Any] | None:
        return self.group.health(mid)

    def leader_id(self) -> str | None:
        """The master that says it leads, named by every other live master; None meanwhile."""
        views = {mid: self.health(mid) for mid, _ in self.live_masters()}
        named = {v.get("leader") for v in views.values() if v is not None}
        if len(named) != 1:
            return None
        mid = named.pop()
        own = views.get(str(mid))
        return str(mid) if own is not None and own.get("role") == "leader" else None

    # --- API through whichever master answers ----------------------------------------------

    def request(self, method: str, path: str, deadline_s: float = 60, **kw: Any) -> httpx.Response | None:
        """A request to a random live master, retried on connection errors, timeouts, 401
        (a new login) and 5xx until ``deadline_s``; None when no master answered in time."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            live = self.live_masters()
            if not live:
                time.sleep(0.2)
                continue
            _, m = self.rng.choice(live)
            try:
                if self._token is None:
                    r = httpx.post(
                        m.url + "/api/v1/auth/login",
                        json={"user": "admin", "password": ADMIN_PASSWORD},
                        timeout=5,
                    )
                    if r.status_code != 200:
                        time.sleep(0.2)
                        continue
                    self._token = str(r.json()["accessToken"])
                r = httpx.request(
                    method, m.url + path, headers={"Authorization": f"Bearer {self._token}"}, timeout=5, **kw
                )
            except httpx.HTTPError:
                time.sleep(0.1)
                continue
            if r.status_code == 401:
                self._token = None
                continue
            if r.status_code >= 500:
                time.sleep(0.1)
                continue
            return r
        return None


@dataclass
class Injector:
    """Injects faults at seeded random times until ``stop`` is set, one action at a time from
    a time-ordered queue; restarts and failover measurements run in their own threads, so a
    worker fault may overlap a leader failover. At most one master down at once, and at
    least one worker up."""

    cluster: Cluster
    rng: random.Random
    hb_timeout_s: float
    stop: threading.Event = field(default_factory=threading.Event)
    faults: list[Fault] = field(default_factory=list)
    leader_failover_s: list[float] = field(default_factory=list)
    helpers: list[threading.Thread] = field(default_factory=list)
    _queue: list[tuple[float, int, str, Callable[[], None]]] = field(default_factory=list)
    _seq: int = 0

    def at(self, when: float, what: str, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, what, action))

    def run(self) -> None:
        now = time.monotonic()
        self.at(now + self.rng.uniform(4, 8), "worker kill", self.kill_worker)
        self.at(now + self.rng.uniform(20, 30), "leader kill", self.kill_leader)
        self.at(now + self.rng.uniform(12, 20), "worker stop", self.stop_worker)
        while not self.stop.is_set():
            when, _, _, action = self._queue[0]
            if self.stop.wait(max(0.0, when - time.monotonic())):
                break
            _, _, what, _ = heapq.heappop(self._queue)
            try:
                action()
            except Exception as e:  # a soak goes on: say what failed, inject the next fault
                say(f"{what} failed: {e!r}")

    def finish(self) -> None:
        """Stop faulting, and wait for every killed or stopped process to be back."""
        self.stop.set()
        for t in self.helpers:
            t.join(180)
        say(f"faults over: {len(self.faults)} injected")

    def _spawn(self, target: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                target()
            except Exception as e:  # e.g. a process that did not come back: its log has why
                say(f"recovery failed: {e!r}"[:2000])

        t = threading.Thread(target=guarded, daemon=True)
        self.helpers.append(t)
        t.start()

    def _workers_up(self) -> list[str]:
        return [w for w in WORKERS if self.cluster.up(w)]

    def kill_worker(self) -> None:
        self.at(time.monotonic() + self.rng.uniform(4, 8), "worker kill", self.kill_worker)
        up = self._workers_up()
        if len(up) < 2:
            return
        wid = self.rng.choice(up)
        back_after = self.rng.uniform(2, 4)
        with self.cluster.lock:
            self.cluster.down.add(wid)
        w = self.cluster.workers[wid]
        t0 = time.time()
        w.kill9()
        say(f"kill -9 worker {wid}")

        def restart() -> None:
            time.sleep(back_after)  # the fault's length, not synchronisation
            w.spawn()
            w.wait_ready(120)
            self.faults.append(Fault(FaultKind.WORKER_KILL, wid, t0, time.time()))
            with self.cluster.lock:
                self.cluster.down.discard(wid)
            say(f"worker {wid} back after {time.time() - t0:.1f} s")

        self._spawn(restart)

    def stop_worker(self) -> None:
        self.at(time.monotonic() + self.rng.uniform(30, 50), "worker stop", self.stop_worker)
        up = self._workers_up()
        if len(up) < 2:
            return
        wid = self.rng.choice(up)
        length = self.hb_timeout_s + self.rng.uniform(1, 3)
        with self.cluster.lock:
            self.cluster.down.add(wid)
        w = self.cluster.workers[wid]
        t0 = time.time()
        w.signal(signal.SIGSTOP)
        say(f"SIGSTOP worker {wid} for {length:.1f} s")

        def resume() -> None:
            time.sleep(length)
            w.signal(signal.SIGCONT)
            self.faults.append(Fault(FaultKind.WORKER_STOP, wid, t0, time.time()))
            with self.cluster.lock:
                self.cluster.down.discard(wid)
            say(f"SIGCONT worker {wid}")

        self._spawn(resume)

    def kill_leader(self) -> None:
        self.at(time.monotonic() + self.rng.uniform(20, 30), "leader kill", self.kill_leader)
        if any(not self.cluster.up(mid) for mid in self.cluster.masters):
            return  # one master is still down or catching up: never two
        mid = self.cluster.leader_id()
        if mid is None:
            return
        back_after = self.rng.uniform(5, 10)
        with self.cluster.lock:
            self.cluster.down.add(mid)
        m = self.cluster.masters[mid]
        t0 = time.time()
        m.kill9()
        say(f"kill -9 leader {mid}")

        def failover_and_restart() -> None:
            survivors = [s for s in self.cluster.masters if s != mid]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if any(
                    (h := self.cluster.health(s)) is not None and h.get("role") == "leader" for s in survivors
                ):
                    break
                time.sleep(0.02)
            answered = time.time()
            self.leader_failover_s.append(round(answered - t0, 3))
            self.faults.append(Fault(FaultKind.LEADER_KILL, mid, t0, answered))
            say(f"new leader answering {answered - t0:.2f} s after the kill")
            time.sleep(max(0.0, t0 + back_after - time.time()))
            m.spawn()
            m.wait_ready(120)
            self._caught_up(mid)
            with self.cluster.lock:
                self.cluster.down.discard(mid)
            say(f"master {mid} back and caught up after {time.time() - t0:.1f} s")

        self._spawn(failover_and_restart)

    def _caught_up(self, mid: str, timeout_s: float = 120) -> None:
        """Wait until ``mid`` applied what the leader had committed when it came back."""
        deadline = time.monotonic() + timeout_s
        target = None
        while time.monotonic() < deadline:
            leader = self.cluster.leader_id()
            if target is None and leader is not None and (h := self.cluster.health(leader)) is not None:
                target = h.get("commitIndex")
            own = self.cluster.health(mid)
            if target is not None and own is not None and (own.get("appliedIndex") or 0) >= target:
                return
            time.sleep(0.1)
        say(f"master {mid} did not catch up in {timeout_s} s")


def say(text: str) -> None:
    """Progress on stderr, with the wall-clock time (the ledger's clock)."""
    import sys

    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)
