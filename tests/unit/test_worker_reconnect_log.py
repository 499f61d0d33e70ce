"""A worker whose masters are down logged one WARNING a second forever (its back-off tops at
1 s): now the first failure of a streak is a WARNING, the rest DEBUG with one summary a
minute, and a welcome after failures one INFO line; the retry pace is unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from pathlib import Path

import pytest

from kiok.worker.reconnect_log import SUMMARY_EVERY_S, ConnectFailures
from tests.master_clients import StubWorker, master_client

WALL = time.mktime((2024, 5, 1, 10, 42, 7, 0, 0, -1))


def test_a_streak_is_one_warning_then_a_summary_a_minute_then_one_info_line() -> None:
    failures = ConnectFailures()
    first = failures.failed("connection to master m1:1: refused", 100.0, WALL)
    assert (first.level, first.text) == (logging.WARNING, "connection to master m1:1: refused")
    quiet = [
        failures.failed(f"connection to master m1:1: refused {i}", 100.0 + i, WALL + i) for i in range(1, 60)
    ]
    assert {line.level for line in quiet} == {logging.DEBUG}
    summary = failures.failed("connection to master m2:2: timed out", 100.0 + SUMMARY_EVERY_S, WALL + 60)
    assert summary.level == logging.WARNING
    assert summary.text == (
        "still cannot reach the masters: 61 attempts since 10:42:07; last error: "
        "connection to master m2:2: timed out"
    )
    assert failures.failed("x", 161.0, WALL).level == logging.DEBUG  # the next minute's is later
    assert failures.failed("x", 160.0 + SUMMARY_EVERY_S, WALL).level == logging.WARNING
    back = failures.connected("m1:1")
    assert back is not None and back.level == logging.INFO
    assert back.text == "reached the masters again (m1:1) after 63 failed attempts since 10:42:07"
    assert failures.connected("m1:1") is None  # no failure since: nothing to say
    again = failures.failed("connection to master m1:1: reset", 500.0, WALL + 400)
    assert again.level == logging.WARNING and again.text == "connection to master m1:1: reset"  # a new streak


async def test_a_worker_pointed_at_a_closed_port_warns_once_and_keeps_retrying_fast(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    attempts = 0

    async def connect(host: str, p: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        nonlocal attempts
        attempts += 1
        return await asyncio.open_connection(host, p)

    client = master_client(tmp_path, [("127.0.0.1", port)], connect=connect)
    client.attach(StubWorker())  # type: ignore[arg-type]
    caplog.set_level(logging.DEBUG, logger="kiok.worker.master_client")
    running = asyncio.create_task(client.run())
    await asyncio.sleep(3.5)
    await client.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(running, 5)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert attempts >= 5  # back-off 0.1, 0.2, 0.5, 1, 1 s: still retrying at once
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"connection to master 127.0.0.1:{port}: ")
    debug = [
        r for r in caplog.records if r.levelno == logging.DEBUG and "connection to master" in r.getMessage()
    ]
    assert len(debug) == attempts - 1
