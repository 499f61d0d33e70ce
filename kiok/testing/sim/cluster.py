"""The simulated cluster's masters: a replicated-log twin and master nodes that run kiok's
own master-side code (``InternalServer``, ``Coordinator``, ``Intake``, ``LogGate``,
``apply()``) over in-memory stores.

The twin keeps Raft's contract as kiok relies on it, not its mechanics: one leader per
term; a proposal commits (in order) after a replication delay if its leader still leads,
and is then applied by every live master; an entry a leader proposed before it died is
either committed by the next leader or lost, and its proposer hears only that the leader
changed (as PySyncObj's ``LEADER_CHANGED``); a restarted master catches up."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kiok.config import Settings
from kiok.errors import NotLeader, Unauthenticated
from kiok.master.coordinator import Coordinator
from kiok.master.intake import Intake
from kiok.master.internal_server import InternalServer
from kiok.master.log_gate import LogGate
from kiok.security.kms import Keyring
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import Listener, notify, settle
from kiok.store.joblog import SPACES as JOBLOG_SPACES
from kiok.store.joblog import JobLogStore
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader
from kiok.store.replicated import apply_entry
from kiok.testing.sim.net import Network

INTERNAL_PORT = 19999
CREDENTIAL = "sim-credential"


@dataclass
class _Proposal:
    cmd: c.Command
    fut: asyncio.Future[Any]
    leader: SimMaster
    term: int


@dataclass
class Counter:
    value: int = 0

    def inc(self, n: int = 1) -> None:
        self.value += n


@dataclass
class _Metrics:
    stale_log_batches: Counter = field(default_factory=Counter)


class ReplicatedLog:
    """The Raft twin shared by the simulated masters."""

    def __init__(self, rng: random.Random, commit_ms: tuple[float, float] = (1.0, 6.0)) -> None:
        self._rng = rng
        self._commit_ms = commit_ms
        self.entries: list[list[c.Command]] = []
        self.term = 0
        self.leader: SimMaster | None = None
        self.masters: dict[str, SimMaster] = {}
        self._pending: list[_Proposal] = []
        self._flush_at: asyncio.TimerHandle | None = None
        #: While set (``slow_disk``), commits take this long (ms): fsyncs stalled on a quorum.
        self.slow_commit_ms: tuple[float, float] | None = None
        #: Per entry (index - 1), the true time a master first applied it (the history's clock).
        self.applied_at: list[float] = []

    def propose(self, master: SimMaster, cmd: c.Command) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if master is not self.leader or not master.alive:
            fut.set_exception(NotLeader(f"master {master.node_id} is not the leader"))
            return fut
        self._pending.append(_Proposal(cmd, fut, master, self.term))
        if self._flush_at is None:
            delay = self._rng.uniform(*(self.slow_commit_ms or self._commit_ms)) / 1000
            self._flush_at = asyncio.get_running_loop().call_later(delay, self._flush)
        return fut

    def _flush(self) -> None:
        self._flush_at = None
        batch, self._pending = self._pending, []
        leader = self.leader
        kept = [p for p in batch if p.leader is leader and p.term == self.term]
        for p in batch:
            if p not in kept and not p.fut.done():
                p.fut.set_exception(NotLeader.leader_changed())
        if not kept or leader is None:
            return
        self.entries.append([p.cmd for p in kept])
        outcomes = leader.catch_up()
        for m in self.masters.values():
            if m is not leader and m.alive:
                m.catch_up()
        for p, outcome in zip(kept, outcomes, strict=True):
            settle(p.fut, outcome)

    def leader_lost(self) -> None:
        """The leader died or stepped down: of what it had not committed, a prefix reached
        a quorum and will be committed by the next leader; the rest is gone. Nobody is told
        which (``LEADER_CHANGED``)."""
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        pending, self._pending = self._pending, []
        survivors = pending[: self._rng.randint(0, len(pending))]
        if survivors:
            self.entries.append([p.cmd for p in survivors])
        for p in pending:
            if not p.fut.done():
                p.fut.set_exception(NotLeader.leader_changed())
        self.leader = None

    def elect(self, master: SimMaster) -> int:
        self.term += 1
        self.leader = master
        master.catch_up()
        return self.term


class _Leadership:
    def __init__(self, master: SimMaster) -> None:
        self._master = master
        self.leading = False

    def leader_internal_address(self) -> str | None:
        leader = self._master.raft_twin.leader
        return f"{leader.node_id}:{INTERNAL_PORT}" if leader is not None else None


class _Admission:
    """Every simulated worker is admitted already: it holds ``CREDENTIAL``."""

    def verify(self, worker_id: str, credential: str) -> None:
        if credential != CREDENTIAL:
            raise Unauthenticated("unknown credential")

    async def redeem(self, token: str, worker_id: str) -> str:
        raise Unauthenticated("the simulator admits no join tokens")


class SimMaster:
    """A master as the internal server sees its node, on in-memory stores."""

    def __init__(
        self,
        node_id: str,
        raft: ReplicatedLog,
        net: Network,
        settings: Settings,
        keyring: Keyring,
        clock_ms: Callable[[], int],
    ) -> None:
        self.node_id = node_id
        self.raft_twin = raft
        self.net = net
        self.settings = settings
        self.keyring = keyring
        self.clock_ms = clock_ms
        self.alive = True
        self.applied = 0
        self.kv = MemoryKV(keys.SPACES)
        self.joblog = JobLogStore(MemoryKV(JOBLOG_SPACES))
        self.reader = StateReader(self.kv)
        self.log = _MasterLog(self)
        self.log_gate = LogGate(self.reader)
        self.metrics = _Metrics()
        self.intake = Intake(
            self.log,
            self.log_gate,
            self.joblog,
            clock_ms,
            replicated=True,
            on_refused_log=self.metrics.stale_log_batches.inc,
        )
        self.coordinator = self._coordinator(0)
        self.raft: object = raft  # not None: leadership decides who takes workers
        self.leadership = _Leadership(self)
        self.admission = _Admission()
        self.revoke_hooks: list[Callable[[str], None]] = []
        self.demotion_hooks: list[Callable[[], None]] = []
        self._listeners: list[Listener] = [self._on_effects]
        self._leader_tasks: list[asyncio.Task[Any]] = []
        self.server = InternalServer(self)  # type: ignore[arg-type]
        raft.masters[node_id] = self

    def _coordinator(self, term: int) -> Coordinator:
        loop = asyncio.get_event_loop()  # virtual time: the simulated monotonic clock
        return Coordinator.for_settings(
            self.settings,
            self.log,
            self.reader,
            self.append_log,
            self.clock_ms,
            term=term,
            monotonic_ms=lambda: int(loop.time() * 1000),
        )

    # --- what the internal server and coordinator use ---------------------------------------

    def append_log(self, run_id: str, task_id: str, data: bytes) -> None:
        if data:
            cmd = c.AppendLogs(at_ms=self.clock_ms(), chunks=[[run_id, task_id, data]])
            self.log.propose_nowait(cmd).add_done_callback(_retrieve)

    def run_log(self, run_id: str, text: str) -> None:
        self.coordinator.run_log(run_id, text)

    def _on_effects(self, fx: Any) -> None:
        self.log_gate.on_effects(fx)
        self.coordinator.on_effects(fx)

    # --- the replicated log ------------------------------------------------------------------

    def catch_up(self) -> list[tuple[Any, BaseException | None]]:
        """Apply every committed entry this master lacks; the last entry's outcomes."""
        outcomes: list[tuple[Any, BaseException | None]] = []
        while self.applied < len(self.raft_twin.entries):
            index = self.applied + 1
            cmds = self.raft_twin.entries[index - 1]
            applied = apply_entry(self.kv, self.joblog, cmds, index)
            self.kv.write(applied.writes, sync=False)
            self.applied = index
            if len(self.raft_twin.applied_at) < index:
                self.raft_twin.applied_at.append(asyncio.get_event_loop().time())
            outcomes = applied.outcomes
            notify(self._listeners, applied.effects)
        return outcomes

    # --- life and leadership -----------------------------------------------------------------

    def start(self) -> None:
        self.alive = True
        self.catch_up()
        self.net.listen(self.node_id, self._accept)

    async def _accept(self, reader: asyncio.StreamReader, writer: Any) -> None:
        await self.server._handle(reader, writer)

    async def promote(self, term: int) -> bool:
        """Lead ``term``: commit ``LeaderElected`` (proving the log is caught up), then run a
        fresh coordinator, as ``kiok.master.leadership`` does."""
        try:
            worker_term = await self.log.propose(c.leader_elected(self.clock_ms(), self.node_id, term))
        except NotLeader:
            return False
        if self.raft_twin.leader is not self or self.raft_twin.term != term or not self.alive:
            return False
        self.coordinator = self._coordinator(int(worker_term))
        self.log_gate.clear()
        self._leader_tasks = [asyncio.create_task(self.coordinator.run(), name=f"coordinator-{self.node_id}")]
        self.leadership.leading = True
        return True

    def demote(self) -> None:
        self.leadership.leading = False
        for task in self._leader_tasks:
            task.cancel()
        self._leader_tasks = []
        for hook in self.demotion_hooks:
            hook()

    def kill(self) -> None:
        """kill -9: its connections drop and it does nothing more; its store survives."""
        self.alive = False
        self.demote()
        self.net.unlisten(self.node_id)
        for conn in list(self.server.connections.values()):
            conn.connected = False
        self.server.connections.clear()
        for timer in self.server._lost_timers.values():
            timer.cancel()
        self.server._lost_timers.clear()
        # A new process starts with a fresh internal server and coordinator.
        self.revoke_hooks.clear()
        self.demotion_hooks.clear()
        self.coordinator = self._coordinator(0)
        self.server = InternalServer(self)  # type: ignore[arg-type]


class _MasterLog:
    """One master's ``CommandLog``: proposals go to the twin (refused unless it leads)."""

    def __init__(self, master: SimMaster) -> None:
        self._master = master

    async def propose(self, cmd: c.Command) -> Any:
        return await self.propose_nowait(cmd)

    def propose_nowait(self, cmd: c.Command, *, fsync: bool = True) -> asyncio.Future[Any]:
        return self._master.raft_twin.propose(self._master, cmd)

    def subscribe(self, listener: Listener) -> None:
        self._master._listeners.append(listener)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
