"""``kiok standalone``: a master and a worker in one process on the embedded store.

The worker is wired to the master through ``InProcessLink`` and ``LocalWorkerHandle`` —
the same two interfaces the internal protocol implements between processes — so the
driver, coordinator and store behave exactly as they do in a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from kiok.config import Settings
from kiok.master.api.app import create_app
from kiok.master.coordinator import WorkerInfo
from kiok.master.node import MasterNode
from kiok.protocol.messages import Assignment, Fence, OfferReply
from kiok.store import commands as c
from kiok.worker.driver import DriverEnv, base_task_env
from kiok.worker.executors import default_executors
from kiok.worker.process import ProcessRunner
from kiok.worker.status_http import create_status_app
from kiok.worker.worker import Worker

log = logging.getLogger(__name__)


def clock_ms() -> int:
    return time.time_ns() // 1_000_000


class InProcessLink:
    """The worker's ``MasterLink`` when master and worker share a process."""

    def __init__(self, node: MasterNode, max_global_concurrency: int) -> None:
        self._node = node
        self._permits = asyncio.Semaphore(max_global_concurrency)

    def report_tasks(self, run_id: str, fence: Fence, tasks: dict[str, dict[str, Any]]) -> None:
        # Not fsync'd: nobody waits on it, it survives kill -9 (RocksDB's log is written),
        # and after a power loss the run resumes and re-runs what was lost (at least once).
        fut = self._node.log.propose_nowait(
            c.ReportTasks(at_ms=clock_ms(), run_id=run_id, term=fence.term, epoch=fence.epoch, tasks=tasks),
            fsync=False,
        )
        fut.add_done_callback(_log_failure)

    def append_log(self, run_id: str, task_id: str, data: bytes, *, final: bool) -> None:
        # Written before the task's final report, like the report not fsync'd: in one process
        # both survive kill -9 together (RocksDB's log is written before append returns).
        self._node.joblog.append(run_id, task_id, data)

    def release_run(self, run_id: str, fence: Fence, reason: str) -> None:
        fut = self._node.log.propose_nowait(
            c.ReleaseRun(at_ms=clock_ms(), run_id=run_id, epoch=fence.epoch, reason=reason)
        )
        fut.add_done_callback(_log_failure)

    async def acquire_task_permit(self) -> None:
        await self._permits.acquire()

    def release_task_permit(self) -> None:
        self._permits.release()


def _log_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("report not applied: %s", fut.exception())


class LocalWorkerHandle:
    """The coordinator's ``WorkerHandle`` for the in-process worker."""

    def __init__(self, worker: Worker, address: str) -> None:
        self._worker = worker
        self._address = address

    def info(self) -> WorkerInfo:
        busy = self._worker.busy_slots
        return WorkerInfo(
            id=self._worker.id,
            address=self._address,
            labels=self._worker.labels,
            slots=self._worker.total_slots,
            free=self._worker.total_slots - busy,
            connected=True,
            draining=self._worker.draining,
            last_heartbeat_ms=clock_ms(),
        )

    async def offer(self, assignment: Assignment, labels: Iterable[str]) -> OfferReply:
        return self._worker.offer(assignment, labels)

    def cancel(self, run_id: str) -> None:
        self._worker.cancel(run_id)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this process owns SIGTERM/SIGINT (drain)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def worker_id_for(settings: Settings) -> str:
    """``kiok.worker.id``, or an id generated once and kept in the data directory."""
    configured = settings.get_str("kiok.worker.id")
    if configured:
        return configured
    path = settings.data_dir / "worker-id"
    if path.exists():
        return path.read_text().strip()
    wid = f"worker-{uuid.uuid4().hex[:8]}"
    path.write_text(wid + "\n")
    return wid


def build_worker(settings: Settings, link: Any, environ: dict[str, str]) -> Worker:
    data = settings.data_dir
    python = settings.get_str("kiok.python.path") or sys.executable
    slots = settings.get_int("kiok.worker.task.slots")
    env = DriverEnv(
        worker_id=worker_id_for(settings),
        link=link,
        slots=asyncio.Semaphore(slots),
        executors=default_executors(
            ProcessRunner(slots), python, settings.get_int("kiok.task.http.connect.timeout.ms") / 1000
        ),
        work_root=Path(settings.get_str("kiok.worker.work.dir") or data / "work"),
        base_env=base_task_env(environ),
        default_timeout_ms=settings.get_int("kiok.scheduler.default.task.timeout.ms"),
        retry_cap_ms=settings.get_int("kiok.scheduler.retry.max.delay.ms"),
        kill_grace_s=settings.get_int("kiok.worker.task.kill.grace.ms") / 1000,
        log_batch_bytes=settings.get_int("kiok.joblog.worker.batch.bytes"),
        log_interval_s=settings.get_int("kiok.joblog.worker.batch.interval.ms") / 1000,
        log_cap_bytes=settings.get_int("kiok.joblog.max.bytes.per.task"),
        clock_ms=clock_ms,
    )
    labels = [x for x in settings.get_str("kiok.worker.labels").split(",") if x.strip()]
    return Worker(env, slots=slots, labels=labels)


async def run_standalone(settings: Settings, environ: dict[str, str]) -> None:
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    node = MasterNode(settings, clock_ms)
    await node.start()
    work_root = Path(settings.get_str("kiok.worker.work.dir") or data / "work")
    work_root.mkdir(parents=True, exist_ok=True)
    link = InProcessLink(node, settings.get_int("kiok.scheduler.max.global.concurrency"))
    worker = build_worker(settings, link, environ)
    status_addr = f"{settings.get_str('kiok.worker.host')}:{settings.get_int('kiok.worker.status.port')}"
    node.coordinator.add_worker(LocalWorkerHandle(worker, status_addr))

    admin = _Server(
        uvicorn.Config(
            create_app(node, max_body_bytes=settings.get_int("kiok.admin.http.max.content.size.bytes")),
            host=settings.get_str("kiok.master.host"),
            port=settings.get_int("kiok.master.admin.port"),
            loop="asyncio",
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )
    status = _Server(
        uvicorn.Config(
            create_status_app(worker, lambda: "connected"),
            host=settings.get_str("kiok.worker.host"),
            port=settings.get_int("kiok.worker.status.port"),
            loop="asyncio",
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers = [asyncio.create_task(admin.serve()), asyncio.create_task(status.serve())]
    log.info(
        "kiok standalone: admin API on http://%s, worker %s status on http://%s, data in %s",
        node.admin_address,
        worker.id,
        status_addr,
        data,
    )
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*servers, stopper], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not stopper and task.exception() is not None:
            log.error("server failed: %s", task.exception())
    log.info("shutting down")
    await worker.drain(settings.get_int("kiok.worker.shutdown.drain.timeout.seconds"))
    admin.should_exit = status.should_exit = True
    for task in servers:
        with contextlib.suppress(Exception):
            await task
    await node.stop()
    if any(t.done() and not t.cancelled() and t.exception() for t in servers):
        raise SystemExit(1)
