"""``kiok worker``: a worker process that connects to the masters, drives the runs it is
given, and serves its status port. SIGTERM drains: no new runs, running ones finish (at
most ``kiok.worker.shutdown.drain.timeout.seconds``), then it disconnects and exits."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from kiok import logs
from kiok.config import Settings
from kiok.roots import preflight
from kiok.roots.common import (
    announce_started,
    build_worker,
    http_limits,
    http_server,
    isolation_for,
    new_status_token,
    status_url,
    wait_for_stop,
    worker_id_for,
)
from kiok.roots.data_watch import DataDirWatch
from kiok.roots.shutdown import Signals, drain
from kiok.roots.startup import claim
from kiok.security.tls import TlsFiles
from kiok.worker.master_client import MasterClient, parse_masters
from kiok.worker.outbox import Outbox
from kiok.worker.status_http import create_status_app

log = logging.getLogger(__name__)


async def run_worker(settings: Settings, environ: dict[str, str]) -> None:
    preflight.check(settings, "worker")  # what `kiok config show --for worker` refuses too
    tls = TlsFiles.from_settings(settings)
    masters = parse_masters(settings.get_str("kiok.worker.masters"))  # checked: no ValueError
    isolation = isolation_for(settings)  # it may refuse: before anything starts
    # The directory (not another process's) and the status port, before anything is
    # announced, the port before anything is written there: one refusal is one line.
    data = settings.data_dir
    lock, (status_listener,) = claim(data, preflight.claimed_ports(settings, "worker"))
    worker_id = worker_id_for(settings)  # a bad <data>/worker-id: refused before anything starts
    signals = Signals()
    credential_file = Path(settings.get_str("kiok.worker.credential.file") or data / "worker-credential")
    client = MasterClient(
        masters,
        worker_id,
        credential_file=credential_file,
        join_token=settings.get_str("kiok.worker.join.token"),
        outbox=Outbox(data / "outbox"),
        heartbeat_interval_s=settings.get_int("kiok.worker.heartbeat.interval.ms") / 1000,
        connect_timeout_s=settings.get_int("kiok.internal.connect.timeout.ms") / 1000,
        io_timeout_s=settings.get_int("kiok.internal.io.timeout.ms") / 1000,
        max_frame_bytes=settings.get_int("kiok.internal.max.frame.bytes"),
        ssl_context=tls.client_context(),
        status_url=status_url(settings, tls.serves_tls),
        refused_retry_s=settings.get_int("kiok.worker.refused.retry.ms") / 1000,
    )
    worker = build_worker(settings, client, environ, isolation, worker_id)
    logs.identify(worker.id)
    client.attach(worker)
    # A new one each start, for drain on the status port: written once the start can no
    # longer be refused (a wrong master key changes nothing in the data directory).
    drain_token = new_status_token(data)
    status = http_server(
        create_status_app(worker, lambda: client.state, drain_token=drain_token),
        settings.get_str("kiok.worker.host"),
        settings.get_int("kiok.worker.status.port"),
        tls,
        http_limits(settings),
    )
    tasks = [
        asyncio.create_task(status.serve(sockets=[status_listener])),
        asyncio.create_task(client.run()),
        # Its credential and outbox gone: it stops, its runs go back to the masters.
        asyncio.create_task(DataDirWatch(lock).run(), name="data-dir-watch"),
    ]
    log.info(
        "kiok worker %s: masters %s, status on %s, data in %s",
        worker.id,
        ", ".join(f"{host}:{port}" for host, port in masters),
        status_url(settings, tls.serves_tls),
        data,
    )
    announce_started()
    failed = await wait_for_stop(signals.stop, tasks)
    log.info("shutting down: no new runs")
    if failed:  # no drain: its runs go back to the masters now
        signals.now.set()
    await drain(
        worker,
        settings.get_int("kiok.worker.shutdown.drain.timeout.seconds"),
        signals,
        "their runs go back to the masters",
    )
    worker.env.work_dirs.discard()
    await asyncio.sleep(0.2)  # let the last reports and releases leave
    await client.stop()
    status.should_exit = True
    tasks[2].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    lock.release()
    if failed:
        raise SystemExit(1)
