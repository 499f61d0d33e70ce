"""``kiok runs logs RUN TASK``: print a task's log by byte offset, optionally following it.

The master answers ``{"data", "offset", "nextOffset", "complete"}``. Data is written as it
comes (no added newlines): verbatim when piped, and on a terminal without the escape
sequences that would drive it (``kiok.cli.terminal``: colours are kept). Without
``--follow`` whatever is stored now is printed; with it, the command polls every
``POLL_INTERVAL_S`` while nothing new arrives and stops once the log is complete and
drained. Task ``__run__`` is the run's own (driver) log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import click

from kiok.cli.client import ApiClient, segment
from kiok.cli.context import CliContext, json_option, pass_cli
from kiok.cli.output import emit_json, emit_json_line
from kiok.cli.terminal import RESET, TerminalFilter

POLL_INTERVAL_S = 0.5


def read_page(page: Any, offset: int) -> tuple[str, int, bool]:
    """``(data, next_offset, complete)`` of one answer, tolerant of missing fields."""
    if not isinstance(page, dict):
        return "", offset, False
    raw = page.get("data")
    data = raw if isinstance(raw, str) else ""
    next_offset = page.get("nextOffset")
    if not isinstance(next_offset, int) or isinstance(next_offset, bool):
        next_offset = offset + len(data.encode())
    return data, next_offset, page.get("complete") is True


def _on_terminal() -> bool:
    return sys.stdout.isatty()


@click.command()
@click.argument("run_id", metavar="RUN")
@click.argument("task_id", metavar="TASK")
@click.option(
    "--follow", "-f", is_flag=True, help="Keep printing new output until the task's log is complete."
)
@click.option(
    "--offset", type=click.IntRange(min=0), default=0, show_default=True, help="Start at this byte."
)
@json_option
@pass_cli
def logs(cli: CliContext, run_id: str, task_id: str, follow: bool, offset: int) -> None:
    """Print the log of TASK in RUN (TASK `__run__` is the run log).

    With --json: one answer as a document, or with --follow one compact document per line
    for every answer that carried data, and the last one.
    """
    client = cli.client()
    path = f"/api/v1/runs/{segment(run_id)}/tasks/{segment(task_id)}/log"
    if cli.as_json and not follow:
        emit_json(client.get(path, params={"offset": offset}))
        return
    safe = TerminalFilter() if _on_terminal() else None
    try:
        with _plain_when_stopped(safe):
            _print_pages(cli, client, path, offset, follow, safe)
    finally:  # interrupted too: the terminal is left plain (``TerminalFilter.end``)
        if safe is not None:
            sys.stdout.write(safe.end())
            sys.stdout.flush()


@contextlib.contextmanager
def _plain_when_stopped(safe: TerminalFilter | None) -> Iterator[None]:
    """On a terminal: SIGTERM ends the command through its ``finally`` (the terminal is left
    plain, as on Ctrl-C), and a suspend (Ctrl-Z) leaves the terminal plain before it stops."""
    if safe is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    def suspend(signum: int, frame: Any) -> None:
        sys.stdout.write(RESET)
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGSTOP)

    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, terminate)}
    previous[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, suspend)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _print_pages(
    cli: CliContext, client: ApiClient, path: str, offset: int, follow: bool, safe: TerminalFilter | None
) -> None:
    while True:
        page = client.get(path, params={"offset": offset})
        data, next_offset, complete = read_page(page, offset)
        progressed = bool(data) and next_offset > offset
        if cli.as_json:
            if progressed or complete:
                emit_json_line(page)
        elif progressed:
            # not click.echo: it would strip colour codes when piped
            sys.stdout.write(data if safe is None else safe.feed(data))
            sys.stdout.flush()
        offset = max(offset, next_offset)
        if progressed:
            continue  # more may be waiting already; ask again before sleeping
        if complete or not follow:
            return
        cli.runtime.sleep(POLL_INTERVAL_S)
