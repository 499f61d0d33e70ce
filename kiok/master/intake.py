"""The one place on a master where what a run's driver says becomes store commands.

A driver says three things about a run it holds: task records (``Report``), log bytes
(``Log``) and "I give it back" (``Release``), each a typed message of ``kiok.protocol``.
Whether the driver is on a worker across the internal protocol
(``kiok.master.internal_server``), in the same process (``kiok standalone``, which hands over
the same message objects without the wire) or in the simulator (``kiok.testing.sim``), it
arrives here, so fencing and the translation to commands are decided once:

- a report is always proposed: ``apply()`` checks the fence (and that the sender is the
  run's driver) when it commits, which also settles a reassignment racing the report;
- a log batch is taken only from the run's current driver under its current fence while
  the run has not ended (``LogGate``), and with several masters checked again when the
  ``AppendLogs`` command is applied; with its ``offset`` (its place in the driver's output
  for the task) a batch sent twice is stored once;
- a release names the driver's epoch and worker, so an old driver cannot release a run that
  has moved on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from kiok.core.interruption import released_error
from kiok.master.log_gate import LogGate
from kiok.protocol.to_master import Log, Release, Report
from kiok.store import commands as c
from kiok.store.commandlog import CommandLog
from kiok.store.joblog import JobLogStore

log = logging.getLogger(__name__)


class Intake:
    def __init__(
        self,
        log_: CommandLog,
        gate: LogGate,
        joblog: JobLogStore,
        clock_ms: Callable[[], int],
        *,
        replicated: bool,
        on_refused_log: Callable[[], None] = lambda: None,
    ) -> None:
        """``replicated``: log bytes go through the command log (every master stores every
        log) rather than straight into this master's job-log store."""
        self._log = log_
        self._gate = gate
        self._joblog = joblog
        self._clock = clock_ms
        self._replicated = replicated
        self._on_refused_log = on_refused_log

    def report(self, worker: str, msg: Report, *, durable: bool) -> asyncio.Future[Any]:
        """Propose the driver's task records; the future is ``apply()``'s verdict (its result
        says ``fenced`` when the fence or the sender was not the run's driver). ``durable``:
        fsync'd before the future resolves (a report the driver keeps until acknowledged)."""
        cmd = c.ReportTasks(
            at_ms=self._clock(),
            run_id=msg.run_id,
            term=msg.fence.term,
            epoch=msg.fence.epoch,
            tasks=msg.tasks,
            worker=worker,
        )
        return self._log.propose_nowait(cmd, fsync=durable)

    def log_batch(self, worker: str, msg: Log) -> bool | asyncio.Future[Any]:
        """Store a driver's log batch: True once stored, or (several masters) the future of
        its commit; False when refused (no fence, not the run's driver under that fence, or
        the run ended): nothing is stored and the refusal is counted. Without an ``offset``
        (standalone: nothing is ever sent twice) the bytes are appended as they come."""
        fence, run_id = msg.fence, msg.run_id
        if fence is None or not self._gate.admits(run_id, worker, fence.term, fence.epoch):
            self._on_refused_log()
            return False
        if not self._replicated:
            stream = None if msg.offset is None else (fence.term, fence.epoch, msg.offset)
            self._joblog.append(run_id, msg.task_id, msg.data, stream=stream)
            return True
        if not msg.data:
            return True
        chunk: list[Any] = [run_id, msg.task_id, msg.data, worker, fence.term, fence.epoch]
        if msg.offset is not None:
            chunk.append(msg.offset)
        fut = self._log.propose_nowait(c.AppendLogs(at_ms=self._clock(), chunks=[chunk]), fsync=False)
        fut.add_done_callback(_log_not_replicated)
        return fut

    def release(self, worker: str, msg: Release) -> asyncio.Future[Any]:
        """The driver gives the run back without finishing it (drain timeout, shutdown, a
        crashed driver): it is assigned again under a new fence."""
        cmd = c.ReleaseRun(
            at_ms=self._clock(),
            run_id=msg.run_id,
            epoch=msg.fence.epoch,
            reason=msg.reason,
            worker=worker,
            lost_error=released_error(msg.reason),
        )
        return self._log.propose_nowait(cmd)


def _log_not_replicated(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        # The worker keeps the batch (unacknowledged) and sends it again after it reconnects.
        log.info("a job-log batch was not replicated: %s", fut.exception())
