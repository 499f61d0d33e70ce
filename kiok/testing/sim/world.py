"""One simulated world: a seed decides the workload, the faults and every delay; kiok's own
master and worker code runs it on virtual time; the invariants (``invariants``) are checked
at the end. Faults: kill -9 of a worker (restarted on its directory later) or of the
leader, a leader stepping down, a worker's connections reset, a worker isolated, a worker
stalled (its traffic held, as a SIGSTOPped process's would be); and, in explicit faults
only, a user cancelling a run (``cancel_run``, ``cancel_cut_off``). With
``Scenario.actions_every_s``, users also pause DAGs, switch maintenance mode, re-run runs
and trigger bursts, and workers refuse offers (``users``), over two more DAGs with a small
``max_active_runs``."""

from __future__ import annotations

import asyncio
import functools
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiok.config import Settings
from kiok.core.states import TERMINAL_RUN_STATES
from kiok.dag.load import spec_from_yaml
from kiok.errors import Conflict, KiokError
from kiok.security.kms import Keyring
from kiok.store import commands as c
from kiok.testing.sim.cluster import ReplicatedLog, SimMaster
from kiok.testing.sim.invariants import all_runs, check
from kiok.testing.sim.net import Network, SimNet
from kiok.testing.sim.scenario import CLASSIC_DAGS, DAGS, Outcome, Scenario
from kiok.testing.sim.tcpnet import TcpNet
from kiok.testing.sim.users import KINDS, LISTED_ONLY, UserActions
from kiok.testing.sim.vloop import VirtualTimeLoop
from kiok.testing.sim.workers import Ledger, SimWorker

EPOCH_MS = 1_800_000_000_000
#: What can go wrong, and how often relative to each other.
_FAULTS = (
    "kill_worker",
    "kill_worker",
    "kill_leader",
    "step_down",
    "cut_worker",
    "isolate_worker",
    "stall_worker",
    "lag_worker",
    "clock_jump",
    "slow_disk",
)


class World:
    def __init__(self, scenario: Scenario, root: Path, net: Network | None = None) -> None:
        self.sc = scenario
        self.rng = random.Random(scenario.seed)
        self.loop = asyncio.get_event_loop()
        self.settings = Settings.load(
            env={},
            overrides={
                "kiok.worker.heartbeat.interval.ms": 1000,
                "kiok.worker.heartbeat.timeout.ms": 5000,
                "kiok.worker.report.linger.ms": 5,
            },
        )
        self.hb_timeout_s = self.settings.get_int("kiok.worker.heartbeat.timeout.ms") / 1000
        net_rng = random.Random(self.rng.random())
        self.net: Network = net if net is not None else SimNet(net_rng)
        #: Per host, how far its wall clock is from the true time (ms).
        self.skew_ms: dict[str, int] = {}
        #: Per run, the true time it was first seen ended (``_note_ended``).
        self.ended_at: dict[str, float] = {}
        self.raft = ReplicatedLog(random.Random(self.rng.random()))
        keyring = Keyring.generate()
        self.masters = [
            SimMaster(f"m{i + 1}", self.raft, self.net, self.settings, keyring, self.wall_clock(f"m{i + 1}"))
            for i in range(scenario.masters)
        ]
        self.ledger = Ledger()
        names = [m.node_id for m in self.masters]
        self.workers = [
            SimWorker(
                f"w{i + 1}",
                names,
                self.net,
                self.settings,
                root,
                self.ledger,
                random.Random(self.rng.random()),
                scenario.plan,
                self.wall_clock(f"w{i + 1}"),
            )
            for i in range(scenario.workers)
        ]
        self.acked: list[str] = []
        self.faults: list[str] = []
        self.trace: list[str] = []
        #: Per worker, (from, to) spans in which it was dead or cut off long enough for the
        #: masters to give its runs away: a task it finished then may run again.
        self.outages: dict[str, list[tuple[float, float]]] = {}
        #: Per worker, the (from, to) spans it was isolated or stalled.
        self.cut_offs: dict[str, list[tuple[float, float]]] = {}
        self._electing = False
        self._background: set[asyncio.Task[Any]] = set()
        extra = scenario.actions_every_s > 0 or not set(scenario.dags) <= set(CLASSIC_DAGS)
        self.dag_names = sorted(DAGS) if extra else list(CLASSIC_DAGS)
        #: Triggers the world will make (``Scenario.runs`` and the bursts).
        self.expected_runs = scenario.runs
        #: Listed user actions draw from the world's generator, as listed cancels do.
        self.users = UserActions(self, self.rng)

    def clock_ms(self) -> int:
        """The true time (the world's: triggers, the invariants' spans)."""
        return EPOCH_MS + int(self.loop.time() * 1000)

    def wall_clock(self, host: str) -> Callable[[], int]:
        """A host's wall clock (``time.time()`` to kiok): the true time plus what its clock
        jumps added (``clock_jump``: an NTP step, a VM resumed). Monotonic time, the loop's,
        never jumps."""
        return lambda: self.clock_ms() + self.skew_ms.get(host, 0)

    def note(self, text: str) -> None:
        self.trace.append(f"{self.loop.time():9.3f} {text}")

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- leadership ---------------------------------------------------------------------------

    def leader(self) -> SimMaster | None:
        leader = self.raft.leader
        return leader if leader is not None and leader.leadership.leading else None

    def _schedule_election(self) -> None:
        if self._electing:
            return
        self._electing = True
        self.loop.call_later(self.rng.uniform(0.3, 1.5), self._elect)

    def _elect(self) -> None:
        self._electing = False
        if self.raft.leader is not None:
            return
        alive = [m for m in self.masters if m.alive]
        if 2 * len(alive) <= len(self.masters):
            self._schedule_election()  # no quorum: try again later
            return
        m = self.rng.choice(alive)
        term = self.raft.elect(m)
        self.note(f"{m.node_id} elected (term {term})")
        self.spawn(self._promote(m, term))

    async def _promote(self, m: SimMaster, term: int) -> None:
        if not await m.promote(term) and self.raft.leader is m and self.raft.term == term:
            self.raft.leader_lost()
            self._schedule_election()

    def _leader_lost(self, m: SimMaster) -> None:
        if self.raft.leader is m:
            self.raft.leader_lost()
            self._schedule_election()

    # --- faults ---------------------------------------------------------------------------------

    def _fault(self, kind: str | None) -> None:
        rng = self.rng
        kind = kind or rng.choice(_FAULTS)
        alive_workers = [w for w in self.workers if w.alive]
        if kind.startswith("clock_jump"):
            self._clock_jump(kind)
            return
        if kind in ("cancel_run", "cancel_cut_off"):
            self._cancel_fault(kind)
            return
        if kind in KINDS or kind in LISTED_ONLY:
            self.users.act(kind)
            return
        if kind == "slow_disk":
            span = rng.uniform(0.5, 9.0)
            self.record(f"commits take 0.2-2 s for {span:.1f}s (slow disks)")
            self.raft.slow_commit_ms = (200.0, 2000.0)
            self.loop.call_later(span, setattr, self.raft, "slow_commit_ms", None)
            return
        if kind == "kill_leader" or kind == "step_down":
            m = self.raft.leader
            if m is None or sum(1 for x in self.masters if not x.alive) > 0:
                kind = "cut_worker"
            elif kind == "kill_leader":
                self.record(f"kill -9 leader {m.node_id}")
                m.kill()
                self._leader_lost(m)
                self.loop.call_later(rng.uniform(1.0, 10.0), self._restart_master, m)
                return
            else:
                self.record(f"leader {m.node_id} steps down")
                self.raft.leader_lost()
                m.demote()
                self._schedule_election()
                return
        if not alive_workers:
            return
        w = rng.choice(alive_workers)
        if kind == "kill_worker":
            self.record(f"kill -9 worker {w.id}")
            now = self.loop.time()
            w.kill()
            self.loop.call_later(rng.uniform(0.2, 8.0), self._restart_worker, w)
            self.outages.setdefault(w.id, []).append((now, now))
        elif kind == "cut_worker":
            self.record(f"reset connections of {w.id}")
            self.net.cut(w.id)
        elif kind == "isolate_worker":
            span = rng.uniform(0.5, 9.0)
            self.record(f"isolate {w.id} for {span:.1f}s")
            self._cut_off(w.id, span)
            self.net.isolate(w.id)
            self.loop.call_later(span, self.net.heal, w.id)
        elif kind == "lag_worker":
            span = rng.uniform(0.5, 9.0)
            self.record(f"lag {w.id}'s open connections for {span:.1f}s")
            self._cut_off(w.id, span)
            self.net.lag(w.id)
            self.loop.call_later(span, self.net.unlag, w.id)
        else:
            span = rng.uniform(0.5, 9.0)
            self.record(f"stall {w.id} for {span:.1f}s")
            self._cut_off(w.id, span)
            self.net.stall(w.id)
            self.loop.call_later(span, self.net.resume, w.id)

    def _clock_jump(self, kind: str) -> None:
        """``clock_jump``: a random host's wall clock steps 2–60 s forward or back;
        ``clock_jump:leader:-40000`` (or a host name): that host's, by that many ms."""
        rng = self.rng
        _, _, how = kind.partition(":")
        if how:
            who, _, by = how.partition(":")
            leader = self.raft.leader
            host = (leader.node_id if leader is not None else "m1") if who == "leader" else who
            jump_ms = int(by)
        else:
            host = rng.choice([m.node_id for m in self.masters] + [w.id for w in self.workers])
            jump_ms = int(rng.choice((-1, 1)) * rng.uniform(2_000, 60_000))
        self.record(f"{host}'s wall clock jumps {jump_ms / 1000:+.1f}s")
        self.skew_ms[host] = self.skew_ms.get(host, 0) + jump_ms

    def _cancel_fault(self, kind: str) -> None:
        """``cancel_run``: a user cancels a random running run; ``cancel_cut_off``: the same
        while its driver is isolated for 2 s (less than the heartbeat timeout: the driver keeps
        the run, and learns of the cancel only when it is reachable again). Only in explicit
        faults (``Scenario.faults``): the random ones, and so every seed's world, are as before."""
        leader = self.leader()
        running = [] if leader is None else [r for r in leader.reader.active_runs() if r["worker"]]
        if not running:
            self.record(f"{kind}: no run has a driver")
            return
        run = self.rng.choice(sorted(running, key=lambda r: str(r["runId"])))
        run_id = run["runId"]
        if kind == "cancel_cut_off":
            w = next((w for w in self.workers if w.id == run["worker"] and w.alive), None)
            if w is not None:
                self.record(f"isolate {w.id} for 2.0s")
                self._cut_off(w.id, 2.0)
                self.net.isolate(w.id)
                self.loop.call_later(2.0, self.net.heal, w.id)
        self.record(f"cancel {run_id} (driven by {run['worker']})")
        self.spawn(self._cancel(run_id))

    async def _cancel(self, run_id: str) -> None:
        """Cancel through whoever leads until one answers; a run that ended first stays so."""
        while True:
            m = self.leader()
            if m is not None:
                try:
                    await m.log.propose(c.CancelRun(at_ms=self.clock_ms(), run_id=run_id, by="sim"))
                    return
                except Conflict:
                    return
                except KiokError as e:
                    self.note(f"cancel not acknowledged: {e}")
            await asyncio.sleep(0.25)

    def _cut_off(self, worker_id: str, span: float) -> None:
        now = self.loop.time()
        self.cut_offs.setdefault(worker_id, []).append((now, now + span))

    def long_outages(self, worker_id: str) -> list[tuple[float, float]]:
        """The spans in which the masters may rightly have given the worker's runs away: it
        was killed, or cut off (isolations and stalls back to back, with a reconnect's slack)
        for about the heartbeat timeout or more."""
        merged: list[list[float]] = []
        for a, b in sorted(self.cut_offs.get(worker_id, [])):
            if merged and a <= merged[-1][1] + 1.5:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        long = [(a, b) for a, b in merged if b - a >= self.hb_timeout_s - 1.5]
        return self.outages.get(worker_id, []) + long

    def record(self, text: str) -> None:
        self.faults.append(f"{self.loop.time():.3f} {text}")
        self.note(text)

    def _restart_master(self, m: SimMaster) -> None:
        self.note(f"restart {m.node_id}")
        m.start()
        if self.raft.leader is None:
            self._schedule_election()

    def _restart_worker(self, w: SimWorker) -> None:
        self.note(f"restart {w.id}")
        w.restart()

    # --- workload -------------------------------------------------------------------------------

    async def propose(self, make: Callable[[], c.Command]) -> Any:
        """Propose through whoever leads, until one acknowledges (a lost answer is retried,
        as a client would; a command may thus commit without being acknowledged)."""
        while True:
            m = self.leader()
            if m is not None:
                try:
                    return await m.log.propose(make())
                except KiokError as e:
                    self.note(f"proposal not acknowledged: {e}")
            await asyncio.sleep(0.25)

    def _register(self, doc: dict[str, Any]) -> c.Command:
        return c.RegisterDag(at_ms=self.clock_ms(), spec=doc)

    def _create_run(self, dag_id: str) -> c.Command:
        return c.CreateRun(at_ms=self.clock_ms(), dag_id=dag_id)

    def start_trigger(self, dag_id: str) -> None:
        self.spawn(self._trigger(dag_id))

    async def _trigger(self, dag_id: str) -> None:
        result = await self.propose(functools.partial(self._create_run, dag_id))
        self.acked.append(result["runId"])
        self.note(f"triggered {result['runId']}")

    async def main(self) -> None:
        for m in self.masters:
            m.start()
        self._elect()
        for w in self.workers:
            w.start()
        for name in (n for n in DAGS if n in self.dag_names):
            spec = spec_from_yaml(DAGS[name])
            doc = spec.to_dict()
            await self.propose(functools.partial(self._register, doc))
        t0 = self.loop.time()
        for _ in range(self.sc.runs):
            at = t0 + self.rng.uniform(0.5, self.sc.window_s)
            dag = self.rng.choice(sorted(self.sc.dags or self.dag_names))
            self.loop.call_at(at, self.start_trigger, dag)
        if self.sc.faults is not None:
            for after, kind in self.sc.faults:
                self.loop.call_at(t0 + after, functools.partial(self._fault, kind))
        elif self.sc.fault_every_s > 0:
            at = t0 + self.rng.expovariate(1 / self.sc.fault_every_s)
            while at < t0 + self.sc.window_s:
                self.loop.call_at(at, functools.partial(self._fault, None))
                at += self.rng.expovariate(1 / self.sc.fault_every_s)
        if self.sc.actions_every_s > 0:
            self.users.rng = random.Random(self.rng.random())
            self.users.schedule(t0, self.sc.window_s, self.sc.actions_every_s)
        self.faults_end = t0 + self.sc.window_s + 9.0  # the longest isolation/stall ends by then
        deadline = t0 + self.sc.window_s + self.sc.settle_s
        while self.loop.time() < deadline:
            await asyncio.sleep(0.5)
            self._note_ended()
            if (
                self.loop.time() > t0 + self.sc.window_s
                and len(self.acked) >= self.expected_runs
                and self._all_ended()
            ):
                break
        # Faults are over: bring every master back so that all can be compared.
        for m in self.masters:
            if not m.alive:
                m.start()
        await asyncio.sleep(1.0)

    def _note_ended(self) -> None:
        """When (true time, to half a second) each run was first seen ended on some master:
        a run's ``endedMs`` is a master's wall clock, which may have jumped."""
        for m in self.masters:
            if not m.alive:
                continue
            for header in m.reader.run_headers_newest():
                if header["state"] in TERMINAL_RUN_STATES:
                    self.ended_at.setdefault(header["runId"], self.loop.time())

    def _all_ended(self) -> bool:
        leader = self.leader()
        if leader is None:
            return False
        return not leader.reader.active_runs()

    async def shutdown(self) -> None:
        for w in self.workers:
            if w.alive:
                w.kill()
        for m in self.masters:
            m.kill()
        for task in list(self._background):
            task.cancel()
        for _ in range(10):  # cancelling may start more (a connection's last words)
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if not pending:
                break
            for t in pending:
                t.cancel()
            # Bounded: a task that lost its cancellation is cancelled again next round, not
            # waited for until the test's timeout.
            done, _ = await asyncio.wait(pending, timeout=5)
            for t in done:  # retrieved, as gather(return_exceptions=True) did
                if not t.cancelled():
                    t.exception()
            await asyncio.sleep(0.01)


def simulate(scenario: Scenario, *, transport: str = "memory", keep: bool = False) -> Outcome:
    """Run one world to its end and check it: over the in-memory network on virtual time
    (``memory``), or over real TCP sockets on 127.0.0.1 in real time (``tcp``)."""
    root = Path(tempfile.mkdtemp(prefix=f"kiok-sim-{scenario.seed}-"))
    loop = VirtualTimeLoop() if transport == "memory" else asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        world = World(scenario, root, TcpNet() if transport == "tcp" else None)
        try:
            loop.run_until_complete(world.main())
            violations = check(world)
        finally:
            loop.run_until_complete(world.shutdown())
        return Outcome(
            scenario,
            violations,
            world.faults,
            len(all_runs(world)),
            len(world.ledger.executions),
            loop.time(),
            world.trace,
            world.ledger.executions,
        )
    finally:
        asyncio.set_event_loop(None)
        loop.close()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
