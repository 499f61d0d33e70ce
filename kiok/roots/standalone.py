"""``kiok standalone``: a master and a worker in one process on the embedded store.

The worker is wired to the master through ``InProcessLink`` and ``LocalWorkerHandle`` —
the same two interfaces the internal protocol implements between processes — so the
driver, coordinator and store behave exactly as they do in a cluster. Like a master, it
serves the internal protocol too (``kiok.master.internal.port``), so more workers can join
it with a join token; the in-process worker takes its task permits from the same pool as
theirs (``kiok.scheduler.max.global.concurrency`` counts every task body).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from kiok.config import Settings
from kiok.errors import StoreUnavailable
from kiok.master.admin_socket import AdminSocket
from kiok.master.api.app import create_app
from kiok.master.api.health import ShutdownNotice
from kiok.master.internal_server import GlobalPermits, InternalServer
from kiok.master.node import MasterNode
from kiok.protocol.link import WorkerInfo
from kiok.protocol.messages import Assignment, Claim, Fence, OfferReply
from kiok.protocol.to_master import Log, Release, Report
from kiok.roots import preflight
from kiok.roots.common import (
    announce_started,
    build_worker,
    clock_ms,
    http_limits,
    http_server,
    isolation_for,
    local_proxy_exposure,
    new_status_token,
    plaintext_exposure,
    status_url,
    trusted_proxies,
    wait_for_stop,
    worker_id_for,
)
from kiok.roots.data_watch import DataDirWatch
from kiok.roots.shutdown import Signals, drain
from kiok.roots.startup import claim
from kiok.security.tls import TlsFiles
from kiok.worker.status_http import create_status_app
from kiok.worker.worker import Worker

log = logging.getLogger(__name__)


class InProcessLink:
    """The worker's ``MasterLink`` when master and worker share a process: the same
    ``Report``/``Log``/``Release`` messages a remote worker sends, handed to the master's
    intake without the wire."""

    #: A start is applied with the report that carries it (``confirm_start`` waits for nothing).
    starts_in_reports = True
    may_be_cut_off = False

    def __init__(self, node: MasterNode, permits: GlobalPermits) -> None:
        self._node = node
        self.worker_id = ""  # set once the worker exists
        self._permits = permits

    def report_tasks(self, run_id: str, fence: Fence, tasks: dict[str, dict[str, Any]]) -> None:
        # Not fsync'd: nobody waits on it, it survives kill -9 (RocksDB's log is written),
        # and after a power loss the run resumes and re-runs what was lost (at least once).
        report = Report(run_id, fence, tasks)
        self._node.intake.report(self.worker_id, report, durable=False).add_done_callback(_log_failure)

    def append_log(
        self, run_id: str, fence: Fence, task_id: str, data: bytes, *, offset: int, final: bool
    ) -> None:
        # Written before the task's final report, like the report not fsync'd: in one process
        # both survive kill -9 together (RocksDB's log is written before append returns).
        # The same fence check as a remote worker's batch: a retired driver's lines stay out.
        # In process nothing is ever sent twice: no offset, no cursor to keep. A store that
        # cannot write said so once and stops the process: the lines are lost, as in a crash.
        with contextlib.suppress(StoreUnavailable):
            self._node.intake.log_batch(self.worker_id, Log(run_id, fence, task_id, data, None, final))

    def release_run(self, run_id: str, fence: Fence, reason: str) -> None:
        release = Release(run_id, fence, reason)
        self._node.intake.release(self.worker_id, release).add_done_callback(_log_failure)

    async def confirm_start(self, run_id: str, fence: Fence, task_id: str, record: dict[str, Any]) -> bool:
        # In one process the record (sent by the driver's report) is applied before any
        # other driver could exist: nothing to wait for.
        return True

    async def acquire_task_permit(self) -> None:
        await self._permits.acquire()

    def release_task_permit(self) -> None:
        self._permits.release()
        self._node.coordinator.capacity_freed(self.worker_id)


def _log_failure(fut: asyncio.Future[Any]) -> None:
    if fut.cancelled() or isinstance(fut.exception(), StoreUnavailable):  # said once: it stops
        return
    if fut.exception() is not None:
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
            task_isolation=self._worker.task_isolation,
        )

    async def offer(self, assignment: Assignment, labels: Iterable[str]) -> OfferReply:
        return self._worker.offer(assignment, labels)

    def cancel(self, run_id: str, reason: str) -> None:
        self._worker.cancel(run_id, reason)

    def held(self) -> tuple[Claim, ...]:
        return tuple(Claim(c["run"], Fence(c["term"], c["epoch"])) for c in self._worker.claims())

    def abandon(self, claims: tuple[Claim, ...]) -> None:
        for held in claims:
            self._worker.abandon(held.run_id, "the restored state does not give it this run", held.fence)

    def resync(self) -> None:
        self._worker.report_all()


async def run_standalone(settings: Settings, environ: dict[str, str]) -> None:
    preflight.check(settings, "standalone")  # what `kiok config show` refuses too
    tls = TlsFiles.from_settings(settings)
    proxies = trusted_proxies(settings)
    isolation = isolation_for(settings)  # it may refuse: before anything starts
    # The directory (not another process's) and every port, before anything is announced or
    # bootstrapped, the ports before anything is written there: one refusal is one line.
    data = settings.data_dir
    lock, (admin_listener, status_listener, internal_listener) = claim(
        data, preflight.claimed_ports(settings, "standalone")
    )
    worker_id = worker_id_for(settings)  # a bad <data>/worker-id: refused before the bootstrap
    signals = Signals()
    node = MasterNode(settings, clock_ms)
    await node.start()
    admin_socket = AdminSocket(node, settings.admin_socket_path)
    await admin_socket.start()
    permits = GlobalPermits(settings.get_int("kiok.scheduler.max.global.concurrency"))
    link = InProcessLink(node, permits)
    worker = build_worker(settings, link, environ, isolation, worker_id)
    link.worker_id = worker.id
    internal = InternalServer(node, reserved_ids=(worker.id,), permits=permits)
    status_addr = status_url(settings, tls.serves_tls)
    node.coordinator.add_worker(LocalWorkerHandle(worker, status_addr))
    await internal.start(internal_listener, tls.server_context(require_client_cert=True))
    shutdown = ShutdownNotice()
    admin = http_server(
        create_app(
            node,
            max_body_bytes=settings.get_int("kiok.admin.http.max.content.size.bytes"),
            shutdown=shutdown,
        ),
        settings.get_str("kiok.master.host"),
        settings.get_int("kiok.master.admin.port"),
        tls,
        http_limits(settings),
        proxies,
    )
    for host in dict.fromkeys((settings.get_str("kiok.master.host"), settings.get_str("kiok.worker.host"))):
        if warning := plaintext_exposure(host, tls.serves_tls):
            log.warning("%s", warning)
    if warning := local_proxy_exposure(proxies, runs_tasks=True):
        log.warning("%s", warning)
    # A new one each start, for drain on the status port: written once the start can no
    # longer be refused (a wrong master key changes nothing in the data directory).
    drain_token = new_status_token(data)
    status = http_server(
        create_status_app(
            worker,
            lambda: "connected",
            lambda: node.coordinator.capacity_freed(worker.id),
            drain_token=drain_token,
        ),
        settings.get_str("kiok.worker.host"),
        settings.get_int("kiok.worker.status.port"),
        tls,
        http_limits(settings),
    )
    servers = [
        asyncio.create_task(admin.serve(sockets=[admin_listener])),
        asyncio.create_task(status.serve(sockets=[status_listener])),
        # A store that cannot write, or the data directory gone: the process stops at once.
        asyncio.create_task(node.wait_failed(), name="store-halt"),
        asyncio.create_task(DataDirWatch(lock).run(node.fence_stores), name="data-dir-watch"),
    ]
    log.info(
        "kiok standalone: admin API on %s://%s, internal protocol on %s:%d, worker %s status on %s, "
        "data in %s",
        "https" if tls.serves_tls else "http",
        node.admin_address,
        settings.get_str("kiok.master.host"),
        settings.get_int("kiok.master.internal.port"),
        worker.id,
        status_addr,
        data,
    )
    announce_started()
    failed = await wait_for_stop(signals.stop, servers)
    log.info("shutting down")
    shutdown.begin("shutting down: draining")  # /readyz 503: no new traffic during the drain
    if failed:  # no drain: nothing the runs do now can be stored; they resume after a restart
        signals.now.set()
    await drain(
        worker,
        settings.get_int("kiok.worker.shutdown.drain.timeout.seconds"),
        signals,
        "their runs resume after a restart",
    )
    worker.env.work_dirs.discard()
    await internal.stop()  # the other workers go; their runs resume after a restart
    admin.should_exit = status.should_exit = True
    for task in servers[2:]:
        task.cancel()
    await asyncio.gather(*servers, return_exceptions=True)
    await admin_socket.stop()
    await node.stop()
    lock.release()
    if failed:
        raise SystemExit(1)
