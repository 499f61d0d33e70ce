"""``kiok master``: the admin HTTP API and the internal protocol server over the store.

The cluster opens (the 503 gate lifts) once at least one worker has connected and been
admitted; with no worker it stays closed, with no timeout."""

from __future__ import annotations

import asyncio
import logging

from kiok.config import Settings
from kiok.master.admin_socket import AdminSocket
from kiok.master.api.app import create_app
from kiok.master.api.health import ShutdownNotice
from kiok.master.internal_server import InternalServer
from kiok.master.node import MasterNode
from kiok.roots import preflight
from kiok.roots.common import (
    announce_started,
    clock_ms,
    http_limits,
    http_server,
    plaintext_exposure,
    stop_event,
    trusted_proxies,
    wait_for_stop,
)
from kiok.roots.data_watch import DataDirWatch
from kiok.roots.startup import claim
from kiok.security.tls import TlsFiles

log = logging.getLogger(__name__)


async def run_master(settings: Settings) -> None:
    preflight.check(settings, "master")  # what `kiok config show --for master` refuses too
    tls = TlsFiles.from_settings(settings)
    proxies = trusted_proxies(settings)
    host = settings.get_str("kiok.master.host")
    # The directory (not another process's) and every port, before anything is announced or
    # bootstrapped, the ports before anything is written there: one refusal is one line.
    data = settings.data_dir
    lock, (admin_listener, internal_listener) = claim(data, preflight.claimed_ports(settings, "master"))
    stop = stop_event()
    node = MasterNode(settings, clock_ms)
    await node.start()
    admin_socket = AdminSocket(node, settings.admin_socket_path)
    await admin_socket.start()
    internal = InternalServer(node)
    await internal.start(internal_listener, tls.server_context(require_client_cert=True))
    shutdown = ShutdownNotice()
    admin = http_server(
        create_app(
            node,
            max_body_bytes=settings.get_int("kiok.admin.http.max.content.size.bytes"),
            forward_timeout_s=settings.get_int("kiok.admin.forward.timeout.ms") / 1000,
            shutdown=shutdown,
        ),
        host,
        settings.get_int("kiok.master.admin.port"),
        tls,
        http_limits(settings),
        proxies,
    )
    if warning := plaintext_exposure(host, tls.serves_tls):
        log.warning("%s", warning)
    halted = asyncio.create_task(node.wait_failed(), name="master-halt")
    watch = asyncio.create_task(DataDirWatch(lock).run(node.fence_stores), name="data-dir-watch")
    servers = [asyncio.create_task(admin.serve(sockets=[admin_listener])), halted, watch]
    log.info(
        "kiok master: admin API on %s://%s, internal protocol on %s:%d, data in %s",
        "https" if tls.serves_tls else "http",
        node.admin_address,
        host,
        settings.get_int("kiok.master.internal.port"),
        data,
    )
    announce_started()
    failed = await wait_for_stop(stop, servers)
    log.info("shutting down")
    shutdown.begin("shutting down")  # /readyz 503 while the workers' connections close
    await internal.stop()
    admin.should_exit = True
    halted.cancel()
    watch.cancel()
    await asyncio.gather(*servers, return_exceptions=True)
    await admin_socket.stop()
    await node.stop()
    lock.release()
    if failed:
        raise SystemExit(1)
