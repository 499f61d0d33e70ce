"""What a batch of applied commands changed, told to in-process listeners once durable."""

from __future__ import annotations

from dataclasses import dataclass, field

from kiok.core.states import TaskRecord


@dataclass
class Effects:
    """What a batch of commands changed, for listeners that run after it is durable."""

    runs_created: list[str] = field(default_factory=list)
    runs_changed: set[str] = field(default_factory=set)
    runs_finished: list[str] = field(default_factory=list)
    #: Finished runs put back to RUNNING by a re-run: they need a driver again.
    runs_reopened: list[str] = field(default_factory=list)
    #: Runs to stop on their driver: (run id, driver, ``kiok.core.interruption.cancel_reason``).
    cancels: list[tuple[str, str, str]] = field(default_factory=list)
    #: Runs whose driver or fence changed (assigned, released): cached fences are stale.
    fences_changed: list[str] = field(default_factory=list)
    #: Workers revoked: the master holding one's connection closes it as it applies the
    #: revocation, before the coordinator's next pass could offer it a run.
    workers_revoked: list[str] = field(default_factory=list)
    dags_changed: list[str] = field(default_factory=list)
    #: DAGs whose schedule watermark moved (a fire): what the scheduler keeps of them is
    #: stale (not in ``dags_changed``: nothing a DAG list shows changes).
    schedules_moved: list[str] = field(default_factory=list)
    stale_reports: int = 0
    #: Worker log batches dropped at apply time (stale fence, other worker, finished run).
    stale_logs: int = 0
    #: Tasks a report ended: (final state, duration of the last attempt in ms), for metrics.
    task_ends: list[tuple[str, int]] = field(default_factory=list)
    #: Every task record a report changed: (run id, task id, record before, record after),
    #: for the queue-wait histogram and the attempt spans (one append per accepted record).
    task_reports: list[tuple[str, str, TaskRecord, TaskRecord]] = field(default_factory=list)
    #: The keyring was installed or rotated: every node re-reads it before the next write.
    keyring_changed: bool = False
    #: Job-log chunks (run id, task id, bytes, stream) to append, in order, once the batch is
    #: durable (replicated masters only; they live in the job-log store, not the state store).
    #: ``stream`` is a worker batch's (term, epoch, offset), which makes a replay idempotent.
    log_appends: list[tuple[str, str, bytes, tuple[int, int, int] | None]] = field(default_factory=list)
    #: Maintenance mode was switched on or off.
    maintenance_changed: bool = False
    #: A user, group, policy, access key, password or the signing key changed: what any
    #: credential resolves to and may do is to be worked out again (``kiok.master.auth_cache``).
    iam_changed: bool = False
    #: The token signing key was replaced (``SealSigningKey``): every master reads it again.
    signing_key_changed: bool = False
    #: A backup replaced the replicated state (its id): every cache of the state is stale.
    restored: str | None = None
    #: Runs deleted whole (retention, ``DELETE /runs/{id}``): caches of them are stale.
    runs_deleted: list[str] = field(default_factory=list)
    #: Runs whose job logs are to be deleted once the batch is durable (the job-log store is
    #: separate: a single master deletes them directly, replicated masters as they apply).
    log_deletes: list[str] = field(default_factory=list)
    #: Job-log segments (run id, task id, start, end) the leader archived to S3: recorded and
    #: dropped from the local store once the batch is durable (like ``log_appends``).
    log_archived: list[tuple[str, str, int, int]] = field(default_factory=list)
    #: Deleted runs whose archived objects the leader removed: their tombstones go.
    archive_forgotten: list[str] = field(default_factory=list)

    #: Every task record written, in order: (run id, task id, version it was written at,
    #: record). With ``run_versions``, a cache of run views takes them from here instead of
    #: re-reading every record of a run in flight (``kiok.master.run_cache``).
    task_writes: list[tuple[str, str, int, TaskRecord]] = field(default_factory=list)
    #: Per run, the versions this batch gave it (``kiok.store.run_version``): ``(before,
    #: after]``, every one a record in ``task_writes`` or a header write; ``before`` is -1
    #: when they are not one unbroken range (a reader must then not rely on them).
    run_versions: dict[str, tuple[int, int]] = field(default_factory=dict)

    def task_written(self, run_id: str, task_id: str, version: int, record: TaskRecord) -> None:
        self.task_writes.append((run_id, task_id, version, record))
        self.version_used(run_id, version - 1, version)

    def version_used(self, run_id: str, before: int, after: int) -> None:
        """Note that ``run_id`` went from version ``before`` to ``after`` in this batch."""
        span = self.run_versions.get(run_id)
        if span is None:
            self.run_versions[run_id] = (before, after)
        else:
            self.run_versions[run_id] = (span[0] if span[1] == before else -1, after)

    def merge(self, other: Effects) -> None:
        self.runs_created.extend(other.runs_created)
        self.runs_changed |= other.runs_changed
        self.runs_finished.extend(other.runs_finished)
        self.runs_reopened.extend(other.runs_reopened)
        self.cancels.extend(other.cancels)
        self.fences_changed.extend(other.fences_changed)
        self.workers_revoked.extend(other.workers_revoked)
        self.dags_changed.extend(other.dags_changed)
        self.schedules_moved.extend(other.schedules_moved)
        self.stale_reports += other.stale_reports
        self.stale_logs += other.stale_logs
        self.task_ends.extend(other.task_ends)
        self.task_reports.extend(other.task_reports)
        self.keyring_changed |= other.keyring_changed
        self.log_appends.extend(other.log_appends)
        self.maintenance_changed |= other.maintenance_changed
        self.iam_changed |= other.iam_changed
        self.signing_key_changed |= other.signing_key_changed
        self.restored = other.restored or self.restored
        self.runs_deleted.extend(other.runs_deleted)
        self.log_deletes.extend(other.log_deletes)
        self.log_archived.extend(other.log_archived)
        self.archive_forgotten.extend(other.archive_forgotten)
        self.task_writes.extend(other.task_writes)
        for run_id, (before, after) in other.run_versions.items():
            self.version_used(run_id, before, after)
