"""A worker's ``MasterClient`` for tests that drive its protocol by hand (no worker process):
``master_client`` builds one with short timeouts, ``StubWorker`` is a worker that holds
nothing, for what the client asks of its worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kiok.worker.master_client import MasterClient
from kiok.worker.outbox import Outbox


class StubWorker:
    """What ``MasterClient`` asks of its worker, for a worker that holds nothing."""

    labels: tuple[str, ...] = ()
    total_slots = 2
    busy_slots = 0
    draining = False
    task_isolation = "none"

    def report_all(self) -> None:
        pass

    def claims(self) -> list[dict[str, object]]:
        return []

    def abandon_all(self, reason: str) -> None:
        pass


def master_client(
    tmp_path: Path, masters: list[tuple[str, int]] | None = None, **overrides: Any
) -> MasterClient:
    """A client of worker "w1" for ``masters`` (default: a port nobody dials), its credential
    and outbox in ``tmp_path``; ``overrides`` replace any keyword argument."""
    options: dict[str, Any] = {
        "credential_file": tmp_path / "credential",
        "join_token": "",
        "outbox": Outbox(tmp_path / "outbox"),
        "heartbeat_interval_s": 0.1,
        "connect_timeout_s": 1,
        "io_timeout_s": 1,
        "max_frame_bytes": 1 << 20,
    }
    return MasterClient(masters or [("127.0.0.1", 1)], "w1", **{**options, **overrides})
