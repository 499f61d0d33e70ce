"""Server commands: ``kiok standalone`` (and, with the cluster, ``kiok master`` / ``kiok worker``).

This is the composition root's front door: the only place that reads the process
environment and turns it into ``Settings``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Coroutine, Iterator
from types import FrameType
from typing import Any

import click

from kiok import logs
from kiok.cli.settings import load_settings
from kiok.config import KEYS, Settings
from kiok.errors import KiokError

_LOG_LEVEL = next(k for k in KEYS if k.name == "kiok.log.level")
_LOG_FORMAT = next(k for k in KEYS if k.name == "kiok.log.format")


def _stopped_during_start_up(signum: int, _: FrameType | None) -> None:
    """SIGTERM or SIGINT before the root put in its own handlers (which drain): nothing was
    announced and nothing runs yet, so the signal does what it did without kiok (the process
    ends by it: a service manager sees an ordinary stop), after one line saying so."""
    name = signal.Signals(signum).name
    logging.getLogger("kiok.start").warning("stopped during start-up (%s)", name)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _early_logging(service: str) -> None:
    """kiok's log format from the first moment, so that a line said before the settings are
    read (``_stopped_during_start_up``) has it too: ``KIOK_LOG_FORMAT`` and ``KIOK_LOG_LEVEL``
    where they hold a value the settings take, else the defaults. ``_settings`` sets it up
    again from the settings (a config file's format, a bad value refused)."""
    fmt = os.environ.get(_LOG_FORMAT.env, "")
    level = os.environ.get(_LOG_LEVEL.env, "").upper()
    logs.setup(
        level if level in logs.LEVELS else _LOG_LEVEL.default,
        fmt if fmt in logs.FORMATS else _LOG_FORMAT.default,
        service,
    )


@contextlib.contextmanager
def _early_signals(service: str) -> Iterator[None]:
    """``_stopped_during_start_up`` until the root's event loop takes SIGTERM/SIGINT over
    (``add_signal_handler``), its line in kiok's log format (``_early_logging``); the
    handlers from before are put back after (a command run in-process, in tests, leaves the
    caller's)."""
    _early_logging(service)
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; only the main thread runs a server
        return
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig in signals:
        signal.signal(sig, _stopped_during_start_up)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _settings(config: str | None, flags: dict[str, tuple[str, object]], service: str) -> Settings:
    settings = load_settings(config, flags)
    try:
        # A master's id is known now; a worker's may be generated in its data directory:
        # its root names it (``logs.identify``) once that is open.
        logs.setup(
            settings.get_str("kiok.log.level"),
            settings.get_str("kiok.log.format"),
            service,
            "" if service == "worker" else settings.get_str("kiok.master.id"),
        )
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    for warning in settings.warnings:
        logging.getLogger("kiok.config").warning("%s", warning)
    return settings


@click.command("standalone")
@click.option(
    "--config", "config", type=click.Path(dir_okay=False), help="Config file (YAML of dotted keys)."
)
@click.option("--data-dir", help="kiok.base.data.dir")
@click.option("--port", type=int, help="kiok.master.admin.port")
def standalone(config: str | None, data_dir: str | None, port: int | None) -> None:
    """Run a master and a worker in one process on the embedded store."""
    with _early_signals("standalone"):
        flags: dict[str, tuple[str, object]] = {}
        if data_dir is not None:  # given is given: --data-dir "" is refused below, not ignored
            flags["kiok.base.data.dir"] = ("--data-dir", data_dir)
        if port is not None:  # --port 0 is a value (flags win over the environment)
            flags["kiok.master.admin.port"] = ("--port", port)
        # The settings (and the log they set up) before the root, whose imports are most of
        # start-up's first second.
        settings = _settings(config, flags, "standalone")
        from kiok.roots.standalone import run_standalone

        _run(run_standalone(settings, dict(os.environ)))


@click.command("master")
@click.option(
    "--config", "config", type=click.Path(dir_okay=False), help="Config file (YAML of dotted keys)."
)
def master(config: str | None) -> None:
    """Run a master: admin HTTP API (8080) and the internal protocol for workers (19999)."""
    with _early_signals("master"):
        settings = _settings(config, {}, "master")
        from kiok.roots.master import run_master

        _run(run_master(settings))


@click.command("worker")
@click.option(
    "--config", "config", type=click.Path(dir_okay=False), help="Config file (YAML of dotted keys)."
)
def worker(config: str | None) -> None:
    """Run a worker: connects to kiok.worker.masters and drives the runs it is given."""
    with _early_signals("worker"):
        settings = _settings(config, {}, "worker")
        from kiok.roots.worker import run_worker

        _run(run_worker(settings, dict(os.environ)))


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run a server; what stops it is one line on stderr and exit status 1. The specific
    checks name the setting or file; anything else still gives one line (type and message):
    before the server announced itself, "cannot start" and its traceback only at DEBUG
    (``KIOK_LOG_LEVEL=DEBUG``); after, "kiok stopped" with its traceback logged at ERROR."""
    from kiok.roots.common import has_started

    try:
        asyncio.run(main)
    except KiokError as e:
        raise click.ClickException(one_line(e.message)) from None
    except Exception as e:  # OSError, and the last resort: no traceback on an operator's screen
        cause = _leaf(e)
        what = (
            one_line(str(cause))
            if isinstance(cause, OSError)
            else f"{type(cause).__name__}: {one_line(str(cause))}"
        )
        if has_started():
            # It ran, then failed (or failed stopping): a bug, or the machine; its traceback
            # belongs in the log, and the line must not say it could not start.
            logging.getLogger("kiok").error("stopped on an unexpected error", exc_info=e)
            raise click.ClickException(f"kiok stopped: {what}") from None
        logging.getLogger("kiok.start").debug("start-up failed", exc_info=e)
        raise click.ClickException(f"cannot start: {what}") from None


def _leaf(e: BaseException) -> BaseException:
    """The first exception an exception group holds (task groups wrap what a task raised)."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return e


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of blanks as single spaces."""
    return " ".join(text.split())


def register_server_commands(group: click.Group) -> None:
    group.add_command(standalone)
    group.add_command(master)
    group.add_command(worker)
