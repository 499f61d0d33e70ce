"""The audit log: who did what, when, from where — logins, password changes and resets, IAM
and connection changes, key rotations, join tokens, worker revocations. Records are commands
like any other state change (replicated with it) and never hold a secret."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from kiok.store import commands as c
from kiok.store.commandlog import CommandLog

log = logging.getLogger(__name__)


class Auditor:
    def __init__(self, log_: CommandLog, clock_ms: Callable[[], int]) -> None:
        self._log = log_
        self._clock = clock_ms

    def record(
        self,
        actor: str,
        action: str,
        target: str = "",
        address: str = "",
        *,
        success: bool = True,
        detail: str = "",
    ) -> None:
        """Append a record (durable shortly after; the caller does not wait)."""
        cmd = c.AppendAudit(
            at_ms=self._clock(),
            actor=actor,
            action=action,
            target=target,
            address=address,
            success=success,
            detail=detail,
        )
        self._log.propose_nowait(cmd).add_done_callback(_report_failure)


def _report_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("audit record not written: %s", fut.exception())
