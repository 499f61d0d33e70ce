"""The retention sweep (leader only): deletes finished runs, or only their job logs, once
they are older than their retention (``kiok.core.retention`` decides; this loop only reads,
proposes and waits).

Every ``kiok.retention.sweep.interval.ms`` it walks each DAG's runs oldest first (deleted
DAGs' too) and proposes ``DeleteRuns`` / ``PurgeRunLogs`` in batches of at most
``kiok.retention.sweep.batch.runs`` runs, reading a bounded page of headers between
proposals and yielding to the event loop after each, so a large backlog never stalls the API.
``apply()`` checks again that each run has finished: a sweep can never delete a live run.
With ``kiok.retention.audit.days`` it then deletes the audit records older than that, the
oldest first, in batches of the same size (``PurgeAudit``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kiok.core.retention import Policy, Verdict, judge, past_every_cutoff
from kiok.core.timefmt import iso_utc
from kiok.dag.durations import parse_duration_ms
from kiok.errors import KiokError
from kiok.store import commands as c
from kiok.store.commandlog import CommandLog
from kiok.store.reader import StateReader
from kiok.waits import wait_set

log = logging.getLogger(__name__)

#: Headers read per page, per run proposed in a batch.
_SCAN_FACTOR = 10


class RetentionSweeper:
    def __init__(
        self,
        log_: CommandLog,
        reader: StateReader,
        clock_ms: Callable[[], int],
        *,
        runs_ms: int | None,
        logs_ms: int | None,
        interval_ms: int,
        batch: int,
        audit_ms: int | None = None,
    ) -> None:
        self._log = log_
        self._reader = reader
        self._clock = clock_ms
        self._runs_ms = runs_ms
        self._logs_ms = logs_ms
        self._audit_ms = audit_ms
        self._interval_ms = max(1, interval_ms)
        self._batch = max(1, batch)
        #: DAG -> (the sequence number up to which every run's logs are gone (or the run is),
        #: when a pass from the DAG's first run found so), so the log pass does not read them
        #: again; in memory, rebuilt after a leader change and once it is as old as the log
        #: retention (``_logs_after``).
        self._logs_done: dict[str, tuple[int, int]] = {}
        self._wake = asyncio.Event()

    def kick(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.sweep()
                await self.sweep_audit()
            except KiokError as e:  # e.g. leadership lost mid-sweep: the next leader sweeps
                log.info("retention sweep stopped: %s", e.message)
            except Exception:
                log.exception("retention sweep failed")
            await wait_set(self._wake, self._interval_ms / 1000)

    def policy(self, dag_id: str) -> Policy:
        """The DAG's own ``retention`` (a deleted DAG's runs: the global settings) over the
        global settings."""
        record = self._reader.dag(dag_id)
        own = record["spec"]["dag"].get("retention") if record is not None else None
        dag_ms = parse_duration_ms(own, "dag.retention") if own is not None else None
        return Policy.of(dag_ms, self._runs_ms, self._logs_ms)

    async def sweep(self) -> tuple[int, int]:
        """One pass over every DAG; returns (runs deleted, runs whose logs were purged)."""
        deleted = purged = 0
        for dag_id in list(self._reader.dags_with_runs()):
            policy = self.policy(dag_id)
            if policy.keeps_everything:
                continue
            now = self._clock()
            n_deleted = await self._pass(dag_id, policy, now, Verdict.DELETE, None)
            logs_after = self._logs_after(dag_id, policy, now)
            n_purged = await self._pass(dag_id, policy, now, Verdict.PURGE_LOGS, logs_after)
            if n_deleted or n_purged:
                log.info(
                    "retention: DAG %s: deleted %d finished run(s), dropped the logs of %d",
                    dag_id,
                    n_deleted,
                    n_purged,
                )
            deleted += n_deleted
            purged += n_purged
        return deleted, purged

    async def sweep_audit(self) -> int:
        """Delete the audit records past ``kiok.retention.audit.days``; how many went."""
        if self._audit_ms is None:
            return 0
        before = self._clock() - self._audit_ms
        oldest = self._reader.oldest_audit_ms()
        if oldest is None or oldest >= before:
            return 0  # nothing due: no command (one per interval would be replicated for ever)
        purged = 0
        while True:
            cmd = c.PurgeAudit(at_ms=self._clock(), before_ms=before, max_records=self._batch)
            done: int = (await self._log.propose(cmd))["purged"]
            purged += done
            if done < self._batch:
                break
            await asyncio.sleep(0)  # let the API in between batches
        if purged:
            log.info("retention: deleted %d audit record(s) older than %s", purged, iso_utc(before))
        return purged

    def _logs_after(self, dag_id: str, policy: Policy, now: int) -> int | None:
        """Where the log pass of ``dag_id`` starts: past the runs known to have no logs, if
        that was found less than the log retention ago (else from the first run). A re-run
        gives a run whose logs were purged new logs (``apply_rerun``), due a log retention
        after it ends: a pass from the first run in between sees the run again."""
        done = self._logs_done.get(dag_id)
        if done is None or policy.logs_ms is None or now - done[1] >= policy.logs_ms:
            self._logs_done.pop(dag_id, None)
            return None
        return done[0]

    async def _pass(self, dag_id: str, policy: Policy, now: int, want: Verdict, after: int | None) -> int:
        """Propose ``want`` for every due run of one DAG, page by page; the count proposed."""
        if want is Verdict.DELETE and policy.runs_ms is None:
            return 0
        if want is Verdict.PURGE_LOGS and policy.logs_ms is None:
            return 0
        done = 0
        settled = after  # logs pass: the contiguous prefix of runs whose logs are gone
        contiguous = True
        while True:
            ids: list[str] = []
            finished = True
            headers = self._reader.dag_run_headers(dag_id, after_seq=after)
            for scanned, run in enumerate(headers, start=1):
                if past_every_cutoff(run, policy, now):
                    break
                verdict = judge(run, policy, now)
                if verdict is want:
                    ids.append(run["runId"])
                if contiguous and (verdict is Verdict.PURGE_LOGS or run.get("logsPurgedMs")):
                    settled = run["seq"]
                else:
                    contiguous = False
                after = run["seq"]
                if len(ids) >= self._batch or scanned >= self._batch * _SCAN_FACTOR:
                    finished = False
                    break
            if ids:
                at = self._clock()
                if want is Verdict.DELETE:
                    delete = c.DeleteRuns(at_ms=at, run_ids=tuple(ids), drop_notifications=True)
                    result = await self._log.propose(delete)
                    done += len(result["deleted"])
                else:
                    result = await self._log.propose(c.PurgeRunLogs(at_ms=at, run_ids=tuple(ids)))
                    done += len(result["purged"])
            if finished:
                break
            await asyncio.sleep(0)  # let the API in between pages
        if want is Verdict.PURGE_LOGS and settled is not None:
            self._logs_done[dag_id] = (settled, self._logs_done.get(dag_id, (settled, now))[1])
        return done
