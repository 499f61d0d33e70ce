"""Pieces every composition root shares: the clock, HTTP servers without their own signal
handling, the worker's identity, and building a worker around a ``MasterLink``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import secrets
import signal
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from kiok.config import ID, Settings
from kiok.core.addresses import in_url, reachable_host
from kiok.errors import InvalidInput, KiokError
from kiok.protocol.link import MasterLink
from kiok.roots.http_protocol import HttpLimits, limited_protocol
from kiok.security.tls import TlsFiles
from kiok.text_file import read_line, write_private
from kiok.worker import spawn_protocol
from kiok.worker.driver import DriverEnv, base_task_env
from kiok.worker.executors import default_executors
from kiok.worker.forkserver import parse_preload
from kiok.worker.isolation import (
    Isolation,
    prepare_work_root,
    python_for_tasks,
    readable_by,
    task_isolation,
)
from kiok.worker.process import ProcessRunner, WorkDirs
from kiok.worker.slots import TaskSlots
from kiok.worker.status_token import status_token_path
from kiok.worker.steady_clock import SteadyWallClock
from kiok.worker.worker import Worker

log = logging.getLogger(__name__)


def clock_ms() -> int:
    return time.time_ns() // 1_000_000


class HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: the process owns SIGTERM/SIGINT (drain)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def http_server(
    app: Any,
    host: str,
    port: int,
    tls: TlsFiles,
    limits: HttpLimits,
    trusted_proxies: Sequence[str] = (),
) -> HttpServer:
    """An HTTP server for ``app``; HTTPS when ``tls`` has a certificate (never asking the
    client for one: browsers and scripts have none). ``X-Forwarded-For``/``-Proto`` are
    believed only from ``trusted_proxies`` (uvicorn would otherwise trust any local peer).
    ``limits``: how long a request may take to arrive, how many connections may be open
    (with TLS the protocol makes the handshake itself, so that they cover it: uvicorn is
    given no certificate)."""
    return HttpServer(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            http=limited_protocol(limits, tls.server_context(require_client_cert=False)),
            ws="none",  # no WebSocket route anywhere: an Upgrade request is a plain request
            loop="asyncio",
            log_config=None,  # uvicorn's loggers keep kiok's handler and format (kiok.logs)
            log_level="warning",
            access_log=False,
            lifespan="off",
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=list(trusted_proxies),
        )
    )


def http_limits(settings: Settings) -> HttpLimits:
    """``kiok.http.*``: how long a request may take to arrive, how many connections may be
    open (from one address: trusted proxies' excepted)."""
    return HttpLimits(
        request_timeout_s=settings.get_int("kiok.http.request.timeout.ms") / 1000,
        max_connections=settings.get_int("kiok.http.max.connections"),
        max_per_address=settings.get_int("kiok.http.max.connections.per.address"),
        unlimited=tuple(trusted_proxies(settings)),
    )


def trusted_proxies(settings: Settings) -> list[str]:
    """``kiok.admin.http.trusted.proxies`` as addresses and networks; a wrong entry stops the
    process at start with the setting's name."""
    out = []
    for item in settings.get_str("kiok.admin.http.trusted.proxies").replace(" ", ",").split(","):
        if not item:
            continue
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise InvalidInput(
                f"kiok.admin.http.trusted.proxies: {item!r} is not an IP address or network"
            ) from None
    return out


def local_proxy_exposure(proxies: Sequence[str], runs_tasks: bool) -> str | None:
    """The warning to log when a process that runs tasks believes ``X-Forwarded-For`` from a
    loopback address: its tasks connect from there too, and can say they are anyone (the
    audit log's address, the login limits'), else None."""
    if not runs_tasks:
        return None
    local = [p for p in proxies if _holds_loopback(ipaddress.ip_network(p))]
    if not local:
        return None
    return (
        f"kiok.admin.http.trusted.proxies names {', '.join(local)}, a loopback address this "
        "process's tasks connect from too: they can set X-Forwarded-For to any address (audit, "
        "login limits). Put the proxy on another address, or run tasks on other hosts (workers)"
    )


def _holds_loopback(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    if isinstance(net, ipaddress.IPv4Network):
        return net.overlaps(ipaddress.IPv4Network("127.0.0.0/8"))
    return ipaddress.IPv6Address("::1") in net


def plaintext_exposure(host: str, serves_tls: bool) -> str | None:
    """The warning to log when a port binds ``host`` without TLS and ``host`` is not a
    loopback address (a host name other than localhost counts as exposed), else None."""
    if serves_tls:
        return None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host.lower() in ("localhost", "localhost.")
    if loopback:
        return None
    return (
        f"listening on {host or 'every address'} without TLS: passwords, tokens and connection "
        "secrets cross the network in clear; set kiok.tls.cert and kiok.tls.key (docs/cluster.md, TLS)"
    )


def stop_event() -> asyncio.Event:
    """Set on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


_started = False


def announce_started() -> None:
    """The process is serving (its start line is logged): a failure from now on is no
    failure to start (``kiok.cli.serve``)."""
    global _started
    _started = True


def has_started() -> bool:
    return _started


def worker_id_for(settings: Settings) -> str:
    """``kiok.worker.id`` (checked by ``Settings``), or an id generated once and kept in
    ``<data>/worker-id``. ``InvalidInput`` in one line naming the file when that cannot be
    read or does not hold an id (blank, not text, another charset than ids have)."""
    configured = settings.get_str("kiok.worker.id")
    if configured:
        return configured
    path = settings.data_dir / "worker-id"
    if not path.exists():
        wid = f"worker-{uuid.uuid4().hex[:8]}"
        path.write_text(wid + "\n")
        return wid
    wid = read_line(path, "the worker id file")
    if not ID.match(wid):
        raise InvalidInput(
            f"the worker id file {path} holds {wid[:64]!r}, not an id (letters, digits and _.-, "
            "starting with a letter or digit, at most 128 characters): fix it, or remove it for a new id"
        )
    return wid


def new_status_token(data: Path) -> str:
    """A new random status token (what drain and undrain on the status port take), saved in
    the data directory ``data`` (mode 0600) for the operator and ``kiok workers drain``."""
    token = secrets.token_urlsafe(32)
    write_private(status_token_path(data), token)
    return token


def status_url(settings: Settings, serves_tls: bool) -> str:
    """Where a worker's status port is reached: ``kiok.worker.host`` (the host name when
    that is every address) and ``kiok.worker.status.port``."""
    host = in_url(reachable_host(settings.get_str("kiok.worker.host")))
    return f"{'https' if serves_tls else 'http'}://{host}:{settings.get_int('kiok.worker.status.port')}"


def isolation_for(settings: Settings) -> Isolation:
    """This worker's task isolation, decided before anything else starts (it may refuse).
    Refused too: a config file that gives a secret setting (a key, a token, a password) and
    that the task user can read, as tasks would read it."""
    isolation = task_isolation(
        settings.get_str("kiok.worker.task.isolation"),
        settings.get_str("kiok.worker.task.user"),
        settings.get_int("kiok.worker.task.users") or settings.get_int("kiok.worker.task.slots"),
    )
    if isolation.as_user:
        for key, path in settings.secrets_in_file.items():  # also those overridden elsewhere
            if any(readable_by(path, uid, isolation.gid) for uid in {isolation.uid, isolation.task_uid}):
                raise InvalidInput(
                    f"the config file {path} holds {key} and the task user "
                    f"{isolation.user} can read it (tasks run as that user): chmod 600 it"
                )
    return isolation


def python_template(settings: Settings, python: str) -> spawn_protocol.Template | None:
    """The warm interpreter python tasks are forked from (``kiok.worker.python.*``), or None
    when ``kiok.worker.python.template.max.tasks`` is 0. A malformed setting refuses the start."""
    max_tasks = settings.get_int("kiok.worker.python.template.max.tasks")
    if max_tasks < 0:
        raise InvalidInput(f"kiok.worker.python.template.max.tasks must be 0 or more, not {max_tasks}")
    try:
        preload = parse_preload(settings.get_str("kiok.worker.python.preload"))
    except ValueError as e:
        raise InvalidInput(str(e)) from None
    return spawn_protocol.Template(python, list(preload), max_tasks) if max_tasks else None


def build_worker(
    settings: Settings,
    link: MasterLink,
    environ: dict[str, str],
    isolation: Isolation,
    worker_id: str | None = None,
) -> Worker:
    """The worker; ``worker_id`` when the root read it already (``worker_id_for``)."""
    data = settings.data_dir
    python = python_for_tasks(settings.get_str("kiok.python.path"), sys.executable, isolation)
    slots = settings.get_int("kiok.worker.task.slots")
    worker_id = worker_id if worker_id is not None else worker_id_for(settings)
    configured_root = settings.get_str("kiok.worker.work.dir")
    work_root = prepare_work_root(configured_root, data, worker_id, isolation)
    runner = ProcessRunner(
        base_task_env(environ),
        spawners=settings.get_int("kiok.worker.spawners"),
        isolation=isolation,
        python_template=python_template(settings, python),
    )
    runner.prewarm()
    env = DriverEnv(
        worker_id=worker_id,
        link=link,
        slots=TaskSlots(slots),
        executors=default_executors(
            runner, python, settings.get_int("kiok.task.http.connect.timeout.ms") / 1000
        ),
        work_dirs=WorkDirs(
            work_root,
            (isolation.uid, isolation.gid) if isolation.as_user else None,
            temporary=isolation.as_user and not configured_root,
        ),
        default_timeout_ms=settings.get_int("kiok.scheduler.default.task.timeout.ms"),
        retry_cap_ms=settings.get_int("kiok.scheduler.retry.max.delay.ms"),
        kill_grace_s=settings.get_int("kiok.worker.task.kill.grace.ms") / 1000,
        report_linger_s=settings.get_int("kiok.worker.report.linger.ms") / 1000,
        log_batch_bytes=settings.get_int("kiok.joblog.worker.batch.bytes"),
        log_interval_s=settings.get_int("kiok.joblog.worker.batch.interval.ms") / 1000,
        log_cap_bytes=settings.get_int("kiok.joblog.max.bytes.per.task"),
        clock_ms=SteadyWallClock(),
    )
    labels = [x for x in settings.get_str("kiok.worker.labels").split(",") if x.strip()]
    return Worker(env, slots=slots, labels=labels, task_isolation=isolation.mode)


async def wait_for_stop(stop: asyncio.Event, servers: list[asyncio.Task[None]]) -> bool:
    """Wait for SIGTERM/SIGINT or a server that ends by itself; True when one failed. A
    ``KiokError`` (a store that cannot write, the data directory gone) is the one line said,
    at CRITICAL; anything else is "server failed"."""
    # What start-up built (the app, its routes, the compiled settings) lives until shutdown:
    # moved out of the collector's sight, so collections scan only what runs allocate.
    gc.freeze()
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*servers, stopper], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    failed = False
    for task in done:
        if task is stopper or (error := task.exception()) is None:
            continue
        if isinstance(error, KiokError):
            log.critical("%s", error.message)
        else:
            log.error("server failed: %s", error)
        failed = True
    return failed
