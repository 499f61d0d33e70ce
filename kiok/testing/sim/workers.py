"""Simulated workers: kiok's own ``Worker``, ``RunDriver`` and ``MasterClient`` (outbox,
replays, claims) over the simulated network, with an executor that "runs" a task for a
span of virtual time and writes its own ledger entry — the record of what really executed,
kept outside kiok, that the invariants are checked against."""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiok.config import Settings
from kiok.dag.spec import TaskType
from kiok.protocol.messages import Assignment, OfferReply, OfferVerdict
from kiok.testing.sim.cluster import CREDENTIAL, INTERNAL_PORT
from kiok.testing.sim.net import Network
from kiok.waits import wait_set
from kiok.worker.driver import DriverEnv
from kiok.worker.executors.base import AttemptContext, AttemptResult
from kiok.worker.master_client import MasterClient
from kiok.worker.outbox import Outbox
from kiok.worker.process import WorkDirs
from kiok.worker.slots import TaskSlots
from kiok.worker.steady_clock import SteadyWallClock
from kiok.worker.worker import Worker


@dataclass
class Execution:
    """One attempt as it really ran: who, when, what it wrote, how it ended."""

    run: str
    task: str
    attempt: int
    worker: str
    incarnation: int
    start: float
    end: float | None = None
    #: "ok", "failed", "stopped" (cancel or abandon), "killed" (its worker died) or "" (running).
    outcome: str = ""
    lines: list[bytes] = field(default_factory=list)


class Ledger:
    def __init__(self) -> None:
        self.executions: list[Execution] = []

    def running(self, worker: str) -> list[Execution]:
        return [e for e in self.executions if e.worker == worker and not e.outcome]


@dataclass(frozen=True)
class TaskPlan:
    """How the simulated tasks behave: seconds of virtual time and the chance to fail."""

    duration_s: tuple[float, float] = (0.05, 2.0)
    fail_rate: float = 0.05
    lines: tuple[int, int] = (1, 6)


class SimExecutor:
    def __init__(self, worker: SimWorker) -> None:
        self._worker = worker

    async def run(self, ctx: AttemptContext) -> AttemptResult:
        w = self._worker
        loop = asyncio.get_running_loop()
        ex = Execution(ctx.run_id, ctx.task.id, ctx.attempt, w.id, w.incarnation, loop.time())
        w.ledger.executions.append(ex)
        plan = w.plan
        rng = w.rng
        duration = rng.uniform(*plan.duration_s)
        fails = rng.random() < plan.fail_rate
        count = rng.randint(*plan.lines)
        stopped = asyncio.Event()
        ctx.stop.on_set(stopped.set)
        try:
            for i in range(count):
                line = f"{ctx.run_id} {ctx.task.id} a{ctx.attempt} line {i}\n".encode()
                ctx.output(line)
                ex.lines.append(line)
                if not await wait_set(stopped, duration / count):
                    continue
                ex.end, ex.outcome = loop.time(), "stopped"
                return AttemptResult(False, -15, "cancelled", stopped=True)
        except asyncio.CancelledError:
            ex.end, ex.outcome = loop.time(), ("killed" if not w.alive else "stopped")
            raise
        ex.end = loop.time()
        if fails:
            ex.outcome = "failed"
            return AttemptResult(False, 1, "exit code 1")
        ex.outcome = "ok"
        return AttemptResult(True, 0)


class _Worker(Worker):
    """kiok's ``Worker``, which can be told to refuse every offer (``refuse_offers``: as one
    whose slots filled between its heartbeat and the offer would), saying nothing of it in its
    heartbeats: the leader learns only from the NAKs."""

    def __init__(self, env: DriverEnv, *, slots: int, refusing: Callable[[], bool]) -> None:
        super().__init__(env, slots=slots)
        self._refusing = refusing

    def offer(self, assignment: Assignment, required_labels: Iterable[str] = ()) -> OfferReply:
        if self._refusing():
            return OfferReply(OfferVerdict.NAK, f"worker {self.id} refuses offers (simulated)")
        return super().offer(assignment, required_labels)


class SimWorker:
    def __init__(
        self,
        worker_id: str,
        masters: list[str],
        net: Network,
        settings: Settings,
        root: Path,
        ledger: Ledger,
        rng: random.Random,
        plan: TaskPlan,
        clock_ms: Callable[[], int],
        slots: int = 4,
    ) -> None:
        self.id = worker_id
        self._masters = masters
        self._net = net
        self._settings = settings
        self._root = root / worker_id
        self.ledger = ledger
        self.rng = rng
        self.plan = plan
        self._clock_ms = clock_ms
        self._slots = slots
        self.alive = False
        self.incarnation = 0
        self.worker: Worker | None = None
        self.client: MasterClient | None = None
        self._task: asyncio.Task[None] | None = None
        #: Until this (virtual) time, every offer is refused (``refuse_offers``).
        self.refusing_until = 0.0

    def start(self) -> None:
        """Start (or restart, on the same directory: its outbox and credential survive)."""
        s = self._settings
        self.incarnation += 1
        self.alive = True
        self._root.mkdir(parents=True, exist_ok=True)
        credential = self._root / "credential"
        credential.write_text(CREDENTIAL + "\n")
        client = MasterClient(
            [(m, INTERNAL_PORT) for m in self._masters],
            self.id,
            credential_file=credential,
            join_token="",
            outbox=Outbox(self._root / "outbox"),
            heartbeat_interval_s=s.get_int("kiok.worker.heartbeat.interval.ms") / 1000,
            connect_timeout_s=s.get_int("kiok.internal.connect.timeout.ms") / 1000,
            io_timeout_s=s.get_int("kiok.internal.io.timeout.ms") / 1000,
            max_frame_bytes=s.get_int("kiok.internal.max.frame.bytes"),
            connect=functools.partial(self._connect, self.incarnation),
        )
        executor = SimExecutor(self)
        env = DriverEnv(
            worker_id=self.id,
            link=client,
            slots=TaskSlots(self._slots),
            executors={t: executor for t in TaskType},
            work_dirs=WorkDirs(self._root / f"work{self.incarnation}"),
            default_timeout_ms=s.get_int("kiok.scheduler.default.task.timeout.ms"),
            retry_cap_ms=s.get_int("kiok.scheduler.retry.max.delay.ms"),
            kill_grace_s=s.get_int("kiok.worker.task.kill.grace.ms") / 1000,
            report_linger_s=s.get_int("kiok.worker.report.linger.ms") / 1000,
            log_batch_bytes=s.get_int("kiok.joblog.worker.batch.bytes"),
            log_interval_s=s.get_int("kiok.joblog.worker.batch.interval.ms") / 1000,
            log_cap_bytes=s.get_int("kiok.joblog.max.bytes.per.task"),
            # As ``kiok.roots.common.build_worker``: anchored on the host's wall clock at start.
            clock_ms=SteadyWallClock(self._clock_ms, asyncio.get_event_loop().time),
        )
        loop = asyncio.get_event_loop()
        self.worker = _Worker(env, slots=self._slots, refusing=lambda: loop.time() < self.refusing_until)
        client.attach(self.worker)
        self.client = client
        self._task = asyncio.create_task(client.run(), name=f"worker-{self.id}")

    async def _connect(self, incarnation: int, host: str, port: int) -> tuple[asyncio.StreamReader, Any]:
        if incarnation != self.incarnation or not self.alive:
            # A killed process has no network. (Its tasks are cancelled, but on Python 3.11
            # a cancel racing a finished wait can be lost: this keeps such a loop harmless.)
            raise ConnectionRefusedError(f"worker {self.id} incarnation {incarnation} is dead")
        return await self._net.connect(self.id, host)

    def kill(self) -> None:
        """kill -9: nothing it does from now on reaches anyone; its tasks die with it."""
        self.alive = False
        self._net.isolate(self.id)
        tasks: list[asyncio.Task[Any]] = []
        if self.client is not None:
            stop = asyncio.ensure_future(self.client.stop())  # in case a cancel is lost
            stop.add_done_callback(lambda f: f.cancelled() or f.exception())
        if self._task is not None:
            tasks.append(self._task)
        if self.worker is not None:
            for driver, task, _ in self.worker._drivers.values():
                tasks.extend(driver._attempts.values())
                tasks.append(task)
            tasks.extend(self.worker._background)
        for task in tasks:
            task.cancel()
        self.worker = None
        self.client = None

    def restart(self) -> None:
        self._net.heal(self.id)
        self.start()

    @property
    def driving(self) -> list[str]:
        return self.worker.active_runs if self.worker is not None else []
