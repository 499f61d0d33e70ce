"""At most ``kiok.scheduler.max.pending.runs.per.dag`` runs of a DAG wait to start at once.

A user who may trigger a DAG could otherwise queue runs of it without end (a backfill queues
up to ``kiok.scheduler.backfill.max.runs`` in one request), and every run queued costs the
leader on each dispatch pass until it starts. The count is the DAG's PENDING runs (read from
the run index, keys only, at most the limit) plus those this master is creating right now
(proposed, not yet applied), so concurrent requests cannot slip past it together. Requests
are forwarded to the leader, so one master counts them all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from kiok.errors import Conflict
from kiok.store.reader import StateReader

SETTING = "kiok.scheduler.max.pending.runs.per.dag"


class PendingQuota:
    def __init__(self, reader: StateReader, limit: int) -> None:
        self._reader = reader
        self._limit = limit
        #: DAG id -> runs being created (proposed, not applied yet); no entry: none.
        self._creating: dict[str, int] = {}

    def room(self, dag_id: str) -> int:
        """How many more runs of ``dag_id`` may wait to start now (0 at the limit). The
        scheduler asks before firing, so a schedule is bounded as triggers are."""
        pending = self._reader.pending_runs(dag_id, self._limit) + self._creating.get(dag_id, 0)
        return max(0, self._limit - pending)

    @asynccontextmanager
    async def admit(self, dag_id: str, runs: int) -> AsyncIterator[None]:
        """Hold ``runs`` new pending runs of ``dag_id`` while they are being created; Conflict
        when the DAG would then have more than the limit waiting to start."""
        if runs <= 0:  # nothing new (a backfill of intervals that all have runs)
            yield
            return
        pending = self._reader.pending_runs(dag_id, self._limit + 1) + self._creating.get(dag_id, 0)
        if pending + runs > self._limit:
            raise Conflict(
                f"DAG {dag_id!r} has {pending} runs waiting to start; {runs} more would pass "
                f"{SETTING} ({self._limit}): wait for them to start, or cancel some"
            )
        self._creating[dag_id] = self._creating.get(dag_id, 0) + runs
        try:
            yield
        finally:
            left = self._creating.pop(dag_id) - runs
            if left > 0:
                self._creating[dag_id] = left
