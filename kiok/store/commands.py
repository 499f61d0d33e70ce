"""Typed commands: every change to cluster state is one of these, applied by ``apply()``.

Commands are frozen, carry everything ``apply()`` needs (including the proposer's
timestamp ``at_ms`` and any randomness, so every replica applies them identically) and
serialise to a msgpack map ``{"k": kind, ...fields}``. Kinds are append-only: a kind once
shipped is never renamed or reused, because replicated logs and snapshots outlive releases.
For the same reason, a change to what ``apply()`` does with a command travels as a new field
whose default keeps the old behaviour: entries logged before apply as they did on every
master, and a master too old to know the field stops (``UnknownCommand``) instead of
applying the command its old way while the others apply it the new way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kiok.errors import InvalidInput


@dataclass(frozen=True)
class Command:
    kind: ClassVar[str] = ""
    at_ms: int

    @property
    def weight(self) -> int:
        """What applying it costs, roughly in task records touched (for batching)."""
        return 1

    def to_wire(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["k"] = self.kind
        return d


_REGISTRY: dict[str, type[Command]] = {}
#: The fields of each registered command class.
_FIELDS: dict[type[Command], frozenset[str]] = {}


def command(cls: type[Command]) -> type[Command]:
    assert cls.kind and cls.kind not in _REGISTRY, cls
    _REGISTRY[cls.kind] = cls
    _FIELDS[cls] = frozenset(f.name for f in dataclasses.fields(cls))
    return cls


class UnknownCommand(InvalidInput):
    """A command of a kind, or with a field, this version does not know: written by a newer
    kiok (a cluster being upgraded), never to be skipped by a replica that cannot apply it."""


def from_wire(d: dict[str, Any]) -> Command:
    d = dict(d)
    kind = d.pop("k", None)
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise UnknownCommand(f"unknown command kind {kind!r}")
    unknown = sorted(str(name) for name in set(d) - _FIELDS[cls])
    if unknown:
        raise UnknownCommand(f"command {kind} has fields this version does not know: {', '.join(unknown)}")
    return cls(**d)


# --- cluster bootstrap and IAM ------------------------------------------------------------


@command
@dataclass(frozen=True)
class Bootstrap(Command):
    """First bootstrap of a cluster: the admin user and the token signing key. Applied at
    most once per cluster; a second one is a no-op, whatever the IAM store looks like."""

    kind: ClassVar[str] = "bootstrap"
    admin_user: str = "admin"
    password_hash: str = ""
    require_password_change: bool = True
    signing_key: bytes = b""


@command
@dataclass(frozen=True)
class SealSigningKey(Command):
    """Retire a store's plaintext token signing key (``keys.LEGACY_SIGNING_KEY``, kept in the
    unencrypted ``kms`` keyspace before this command existed): it is deleted and
    ``signing_key``, a new random key (the old one may have leaked with a copy of the store),
    is stored encrypted (``keys.SIGNING_KEY``). A no-op once the legacy key is gone, so a
    replay or a second proposal rotates nothing. Every token signed before stops working."""

    kind: ClassVar[str] = "seal_signing_key"
    signing_key: bytes = b""


@command
@dataclass(frozen=True)
class InstallKeyring(Command):
    """First start of a store: the PBKDF2 salt and the data keys wrapped by the root key.
    A no-op when the store already has a keyring."""

    kind: ClassVar[str] = "install_keyring"
    salt: bytes = b""
    wrapped: bytes = b""


@command
@dataclass(frozen=True)
class RotateKey(Command):
    """A new version of data key ``key`` becomes current: ``wrapped`` is the whole keyring
    (every version, so older data still decrypts), wrapped by the root key. It was made from
    the stored keyring whose SHA-256 is ``base``: applied over any other (a rotation applied
    meanwhile), it would drop that rotation's new version, and whatever was written under it
    would never decrypt again; so it is refused (empty ``base``: an older master's, unchecked)."""

    kind: ClassVar[str] = "rotate_key"
    key: str = ""
    version: int = 0
    wrapped: bytes = b""
    base: str = ""


@command
@dataclass(frozen=True)
class LeaderElected(Command):
    """The first command of every new leader: its commit proves the leader has applied all
    that came before, and the record tells a restarted cluster who led last. With a
    ``term_floor`` (``fence_floor(at_ms)``; 0 in entries logged before the field existed,
    which apply as they did), it also hands the leader its term for workers, the result: above
    every earlier one and above the floor (``keys.WORKER_TERM``)."""

    kind: ClassVar[str] = "leader_elected"
    master: str = ""
    term: int = 0
    term_floor: int = 0


@command
@dataclass(frozen=True)
class OpenCluster(Command):
    """Every master and a worker were ready once: from now on the API stays open while a
    quorum of masters is (a lost master makes the cluster degraded, not closed)."""

    kind: ClassVar[str] = "open_cluster"


@command
@dataclass(frozen=True)
class AnnounceMaster(Command):
    """A master's addresses, so the others can forward to it and redirect workers to it."""

    kind: ClassVar[str] = "announce_master"
    master: str = ""
    admin_url: str = ""
    internal_address: str = ""


@command
@dataclass(frozen=True)
class AppendAudit(Command):
    kind: ClassVar[str] = "append_audit"
    actor: str = ""
    action: str = ""
    target: str = ""
    address: str = ""
    success: bool = True
    detail: str = ""


@command
@dataclass(frozen=True)
class PutUser(Command):
    """Create a user, or update one (an empty ``password_hash`` keeps the password).

    The ``expect_*`` fields (None: not checked) are what the caller's rights were checked
    against: whether the user existed, and its groups and policies. Applying refuses with
    Conflict when the record no longer matches, so no concurrent change slips past the check."""

    kind: ClassVar[str] = "put_user"
    name: str = ""
    password_hash: str = ""
    groups: tuple[str, ...] = ()
    policies: tuple[str, ...] = ()
    expect_existing: bool | None = None
    expect_groups: tuple[str, ...] | None = None
    expect_policies: tuple[str, ...] | None = None
    #: Whether the user must change its password at its next login (None: as it was; a new
    #: user: no).
    require_password_change: bool | None = None


@command
@dataclass(frozen=True)
class PutGroup(Command):
    """Create or replace a group; ``expect_policies`` as for ``PutUser``; ``create_only``: a
    group of that name already there is refused (``If-None-Match: *``)."""

    kind: ClassVar[str] = "put_group"
    name: str = ""
    policies: tuple[str, ...] = ()
    expect_policies: tuple[str, ...] | None = None
    create_only: bool = False


@command
@dataclass(frozen=True)
class PutPolicy(Command):
    """Create a policy or replace its document.

    ``unchecked_attach``: the caller's ``iam:AttachPolicy`` / ``iam:DetachPolicy`` were not
    checked, because when the API looked the write changed no attached policy's document.
    Applying refuses with Conflict when it now would (the policy was attached meanwhile), so
    no concurrent attach slips past the check. False: not fenced (the caller was checked, or
    the entry was logged before the field existed)."""

    kind: ClassVar[str] = "put_policy"
    name: str = ""
    document: dict[str, Any] = field(default_factory=dict)
    unchecked_attach: bool = False
    #: Create only (``If-None-Match: *``): Conflict when a policy of that name exists when
    #: applied, so one created meanwhile is not replaced either. False in older entries.
    create_only: bool = False


@command
@dataclass(frozen=True)
class PutAccessKey(Command):
    """An access key for scripts: ``AccessKey <id>:<secret>``; only the secret's hash is kept."""

    kind: ClassVar[str] = "put_access_key"
    key_id: str = ""
    user: str = ""
    secret_hash: str = ""


@command
@dataclass(frozen=True)
class DeleteIam(Command):
    """Delete a user, group, policy or access key (``what``: "user" | "group" | "policy" |
    "accesskey"). What refers to it goes with it: a user's access keys, a group's place in
    its members' groups, a policy's place on users and groups; so a new record of the same
    name starts with nothing.

    ``unchecked_attach`` (a policy only): as for ``PutPolicy``; the caller's
    ``iam:DetachPolicy`` was not checked because the policy was attached to nobody."""

    kind: ClassVar[str] = "delete_iam"
    what: str = ""
    name: str = ""
    unchecked_attach: bool = False


@command
@dataclass(frozen=True)
class SetPassword(Command):
    kind: ClassVar[str] = "set_password"
    user: str = ""
    password_hash: str = ""
    require_password_change: bool = False


# --- worker admission -------------------------------------------------------------------------
# Only SHA-256 hashes of join tokens and credentials travel in commands and reach the store.


@command
@dataclass(frozen=True)
class IssueJoinToken(Command):
    """A one-time join token for one worker, valid until ``expires_ms``."""

    kind: ClassVar[str] = "issue_join_token"
    token_hash: str = ""
    role: str = "worker"
    expires_ms: int = 0


@command
@dataclass(frozen=True)
class RedeemJoinToken(Command):
    """A worker exchanges its join token for a credential (``credential_hash``). A token is
    spent by its first exchange: presenting it again is refused, whoever does."""

    kind: ClassVar[str] = "redeem_join_token"
    token_hash: str = ""
    worker_id: str = ""
    credential_hash: str = ""
    #: A revoked id is admitted again only with a token issued after its revocation
    #: (``apply_admission.redeem_refusal``); False in entries logged before the field existed,
    #: which apply as they did.
    since_revocation: bool = False


@command
@dataclass(frozen=True)
class RevokeWorker(Command):
    """Revoke a worker's credential; only a new join token admits that id again. With
    ``take_runs`` (False in entries logged before the field existed, which apply as they did),
    the runs it drives are taken from it at once (``apply_runs.take_runs_from_revoked``)."""

    kind: ClassVar[str] = "revoke_worker"
    worker_id: str = ""
    take_runs: bool = False


@command
@dataclass(frozen=True)
class PutConnection(Command):
    """Create or replace a connection (its values are encrypted with connection-encryption)."""

    kind: ClassVar[str] = "put_connection"
    connection_id: str = ""
    type: str = "generic"
    description: str = ""
    properties: dict[str, str] = field(default_factory=dict)


@command
@dataclass(frozen=True)
class DeleteConnection(Command):
    kind: ClassVar[str] = "delete_connection"
    connection_id: str = ""


# --- DAGs ------------------------------------------------------------------------------------


@command
@dataclass(frozen=True)
class RegisterDag(Command):
    """Insert or replace a DAG (a validated ``DagSpec.to_dict()``); its schedule watermark
    arms from ``at_ms`` on first registration and when the schedule (cron or zone) is added or
    changed, and is kept otherwise (``kiok.core.cron.watermark_on_register``)."""

    kind: ClassVar[str] = "register_dag"
    spec: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    #: Who registered it, for the version history.
    by: str = ""
    #: How many versions to keep (``kiok.dag.versions.keep``; 0 in entries written before
    #: versions were kept: none are recorded).
    keep_versions: int = 0


@command
@dataclass(frozen=True)
class DeleteDag(Command):
    kind: ClassVar[str] = "delete_dag"
    dag_id: str = ""


@command
@dataclass(frozen=True)
class SetDagPaused(Command):
    kind: ClassVar[str] = "set_dag_paused"
    dag_id: str = ""
    paused: bool = False


# --- runs ------------------------------------------------------------------------------------


@command
@dataclass(frozen=True)
class CreateRun(Command):
    """A manual run. Scheduled runs come from ``FireSchedule``."""

    kind: ClassVar[str] = "create_run"
    dag_id: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    trigger: str = "manual"
    #: Who triggered it ("" from an older master: not known).
    by: str = ""
    #: The trigger request's W3C ``traceparent`` when tracing is on ("" otherwise).
    trace: str = ""


@command
@dataclass(frozen=True)
class FireSchedule(Command):
    """Create one run per fire time not seen before ((DAG, fire time) identifies a scheduled
    run, so proposing the same interval twice creates one run) and advance the watermark."""

    kind: ClassVar[str] = "fire_schedule"
    dag_id: str = ""
    fire_times: tuple[int, ...] = ()
    watermark_ms: int = 0
    catchup: bool = False


#: Fences a floor leaves room for per millisecond of the leader's clock (``fence_floor``).
FENCES_PER_MS = 1024
#: The highest floor: the fences above it still fit a signed 64-bit msgpack integer. (Clocks
#: reach it in 140,000 years; fences stay below 2**53, exact in JSON, until 2248.)
MAX_FENCE_FLOOR = 2**62


def fence_floor(now_ms: int) -> int:
    """The floor the leader puts in an ``AssignRun`` it proposes at ``now_ms``: its clock in
    fence units. A fence handed out later than every fence of a backup (by a leader whose
    clock did not fall behind the old leader's) is above them all, even in a store that never
    saw the fences given after that backup (a restore into fresh masters)."""
    return min(max(now_ms, 0) * FENCES_PER_MS, MAX_FENCE_FLOOR)


def is_floor(value: object) -> bool:
    """Whether a command's ``fence_floor``/``term_floor`` is one ``fence_floor`` can make."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_FENCE_FLOOR


def leader_elected(at_ms: int, master: str, raft_term: int) -> LeaderElected:
    """The ``LeaderElected`` a master commits on taking the lead at ``at_ms``: with its clock
    as the floor of the term it is handed for workers (never 0, which would ask for none)."""
    return LeaderElected(at_ms=at_ms, master=master, term=raft_term, term_floor=max(1, fence_floor(at_ms)))


@command
@dataclass(frozen=True)
class AssignRun(Command):
    """Give a run to a driver under a new fence: (term, an epoch never handed out before,
    above ``keys.FENCE_EPOCH`` and ``fence_floor``). Tasks a previous driver had RUNNING are
    marked lost and will run again as a new attempt. ``fence_floor`` is set by the proposer
    (``fence_floor(at_ms)``); it is 0 in entries logged before the field existed, so those
    apply exactly as they did."""

    kind: ClassVar[str] = "assign_run"
    run_id: str = ""
    worker: str = ""
    term: int = 0
    fence_floor: int = 0
    #: A pending run is refused while its DAG is paused or maintenance mode is on (False in
    #: entries logged before the field existed, which apply as they did).
    respect_holds: bool = False
    #: The error the previous driver's RUNNING tasks are left with when they are marked lost
    #: (``kiok.core.interruption``): empty for "driver lost" (so in entries logged before the
    #: field existed); ``REVOKED_ERROR`` when that driver's worker was revoked.
    lost_error: str = ""


@command
@dataclass(frozen=True)
class ReleaseRun(Command):
    """The driver gave the run back (NAK, drain, lost connection) under ``epoch``. With a
    ``worker``, only that worker's hold on the run is released (empty in entries written
    before the field existed)."""

    kind: ClassVar[str] = "release_run"
    run_id: str = ""
    epoch: int = 0
    reason: str = ""
    worker: str = ""
    #: The error its running tasks are left with (``kiok.core.interruption.released_error``,
    #: decided by the leader): empty for "driver lost".
    lost_error: str = ""


@command
@dataclass(frozen=True)
class ReportTasks(Command):
    """Task records from the driver holding fence (term, epoch). Stale fences and stale or
    duplicate records are ignored and counted; the run ends when every task is terminal.
    ``worker`` is who sent it: a report from any worker but the run's driver is fenced
    (empty in entries written before the field existed: the fence alone decides)."""

    kind: ClassVar[str] = "report_tasks"
    run_id: str = ""
    term: int = 0
    epoch: int = 0
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    worker: str = ""

    @property
    def weight(self) -> int:
        return max(1, len(self.tasks))


@command
@dataclass(frozen=True)
class AppendLogs(Command):
    """Task output and run-log lines, replicated so that every master holds every job log.
    Each chunk is ``[run id, task id, bytes]`` (the master's own lines) or ``[run id, task id,
    bytes, worker, term, epoch(, offset)]`` (a worker's batch, appended only if that worker
    still drives the run under that fence and the run has not finished; otherwise dropped and
    counted; with ``offset``, its place in that driver's stream for the task, only the bytes
    the job-log store does not have yet are appended, so a replayed batch adds nothing).
    Chunks are appended at the end of their log when applied (so every master computes the
    same offsets). Only replicated masters propose it; a single master appends to its job-log
    store directly, after the same check."""

    kind: ClassVar[str] = "append_logs"
    chunks: list[list[Any]] = field(default_factory=list)


@command
@dataclass(frozen=True)
class CancelRun(Command):
    """Cancel a run; ``by`` is the user who asked (told to the driver, so each stopped task's
    log names them; empty in commands logged before it existed)."""

    kind: ClassVar[str] = "cancel_run"
    run_id: str = ""
    by: str = ""


@command
@dataclass(frozen=True)
class FailRun(Command):
    """Stop a run as ``CancelRun`` does, but end it FAILED with ``reason`` (the leader's run
    timeout). A run that already ended is left alone."""

    kind: ClassVar[str] = "fail_run"
    run_id: str = ""
    reason: str = ""


@command
@dataclass(frozen=True)
class RerunRun(Command):
    """Re-run a finished run in place (``kiok.core.rerun``): the chosen tasks go back to
    PENDING keeping their attempt numbers, the others keep their records, and the run is
    PENDING again, queued like a new run (``queued``; in entries logged before the field
    existed it is False and the run is RUNNING again at once, as it then was). Refused
    (Conflict) while the run has not ended."""

    kind: ClassVar[str] = "rerun_run"
    run_id: str = ""
    from_task: str | None = None
    only_failed: bool = True
    by: str = ""
    queued: bool = False
    #: The re-run's SLA is measured from the re-run (``lastRerun.freshSla``) and may be missed
    #: again (``slaMissed`` cleared); False in entries logged before the field existed, which
    #: apply as they did: measured from the run's first start, flagged once.
    fresh_sla: bool = False
    #: Refused (Conflict) when the run's DAG was deleted: deleting a DAG stops its triggers,
    #: and a re-run is one. Decided here, not by the API, so a delete committed between the
    #: request and its entry still wins; False in entries logged before the field existed.
    dag_must_exist: bool = False


@command
@dataclass(frozen=True)
class Backfill(Command):
    """One run per interval (``[start, end)`` ms, start = the cron fire time it stands for) not
    seen before: (DAG, fire time) identifies a scheduled run, so a repeated backfill, or one
    over intervals the scheduler already ran, creates nothing twice."""

    kind: ClassVar[str] = "backfill"
    dag_id: str = ""
    intervals: tuple[tuple[int, int], ...] = ()
    by: str = ""

    @property
    def weight(self) -> int:
        return max(1, 4 * len(self.intervals))


@command
@dataclass(frozen=True)
class NotifySlaMiss(Command):
    """The leader saw a run pass its DAG's ``sla``: flag the run and record its ``on_sla_miss``
    notifications. A no-op for a run already flagged, so it happens once per run (and once
    per re-run: ``RerunRun.fresh_sla`` clears the flag)."""

    kind: ClassVar[str] = "notify_sla_miss"
    run_id: str = ""


@command
@dataclass(frozen=True)
class FinishNotification(Command):
    """A due notification was delivered, or given up after its last attempt: it leaves the
    outbox (``detail`` says how it went). A no-op when it already left."""

    kind: ClassVar[str] = "finish_notification"
    key: str = ""
    delivered: bool = False
    detail: str = ""


# --- data lifecycle: maintenance mode and retention ---------------------------------------------


@command
@dataclass(frozen=True)
class SetMaintenance(Command):
    """Switch maintenance mode on or off (``by``: who did it). While on, no run is created
    (manual triggers are refused, cron firings are skipped for good) and pending runs are not
    dispatched; switching it on or off again is a no-op that keeps the window's start."""

    kind: ClassVar[str] = "set_maintenance"
    enabled: bool = False
    by: str = ""


@command
@dataclass(frozen=True)
class DeleteRuns(Command):
    """Delete finished runs whole: header, task records, indexes, spec copy, the scheduled
    marker once the DAG's watermark is past it, and (as an effect) the job logs. A run that
    is unknown or has not finished is left alone and named in the result; with ``strict``
    (a single run from the API) it is refused instead (NotFound, Conflict)."""

    kind: ClassVar[str] = "delete_runs"
    run_ids: tuple[str, ...] = ()
    strict: bool = False
    #: Their notifications not yet delivered go too (False in entries from before it was
    #: added: every master decides those as the kiok that wrote them did).
    drop_notifications: bool = False

    @property
    def weight(self) -> int:
        return max(1, 8 * len(self.run_ids))


@command
@dataclass(frozen=True)
class PurgeRunLogs(Command):
    """Delete the job logs of finished runs, keeping their records (``kiok.retention.logs.days``);
    the header records when (``logsPurgedMs``). Unknown, unfinished or already purged runs are
    left alone."""

    kind: ClassVar[str] = "purge_run_logs"
    run_ids: tuple[str, ...] = ()

    @property
    def weight(self) -> int:
        return max(1, 4 * len(self.run_ids))


@command
@dataclass(frozen=True)
class PurgeAudit(Command):
    """Delete the oldest audit records written before ``before_ms``, at most ``max_records``
    of them (``kiok.retention.audit.days``); the result says how many went."""

    kind: ClassVar[str] = "purge_audit"
    before_ms: int = 0
    max_records: int = 0

    @property
    def weight(self) -> int:
        return max(1, self.max_records)


# --- backups ------------------------------------------------------------------------------------


@command
@dataclass(frozen=True)
class SetBackupCron(Command):
    """Set (or, with an empty ``cron``, clear) when the leader takes a backup on its own; the
    API checked the expression. ``by``: who did it."""

    kind: ClassVar[str] = "set_backup_cron"
    cron: str = ""
    by: str = ""


@command
@dataclass(frozen=True)
class RestoreBackup(Command):
    """Replace the replicated state with backup ``backup_id`` (several masters). Every master,
    as it applies the entry, fetches the backup from the shared target, checks that its
    manifest still hashes to ``manifest_sha256``, verifies every object and swaps its stores
    (``kiok.master.backups``); ``apply()`` then records the restore on top. ``by``: who did it.
    A single master proposes it after its own swap, only to record it. ``raft_index``: the
    index of the entry that carries it, set by the replicated log as it applies the entry
    (alike on every master; what a proposer sends is overwritten); 0 on a single master."""

    kind: ClassVar[str] = "restore_backup"
    backup_id: str = ""
    manifest_sha256: str = ""
    by: str = ""
    raft_index: int = 0
    #: A new token signing key, stored on top of the restored state: tokens issued before the
    #: restore end (a backup of this cluster holds the key they were signed with). Empty in
    #: entries from before it was added: the restored key stays.
    signing_key: bytes = b""
    #: Each unfinished run's logs get a line saying where what was written between the backup
    #: and the restore is missing (``apply_restore_backup``); False in entries logged before
    #: the field existed, which apply as they did.
    mark_logs: bool = False


# --- job logs archived to S3 --------------------------------------------------------------------


@command
@dataclass(frozen=True)
class ArchiveLogs(Command):
    """The leader copied these job-log ranges to the object store: each segment is ``[run id,
    task id, start, end]`` (object key ``kiok.store.joblog_archive.segment_key``). Every master
    records them and drops its local chunks of the range. A segment that does not start where
    the log's archive ends (a replay, a deposed leader's flush) is ignored."""

    kind: ClassVar[str] = "archive_logs"
    segments: list[list[Any]] = field(default_factory=list)


@command
@dataclass(frozen=True)
class ForgetArchivedRuns(Command):
    """The leader deleted these deleted runs' archived log objects: every master forgets the
    tombstones that asked for it."""

    kind: ClassVar[str] = "forget_archived_runs"
    run_ids: tuple[str, ...] = ()
