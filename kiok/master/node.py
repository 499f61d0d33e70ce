"""A master node: the state store and command log, auth, scheduler, coordinator and the
job-log store, wired together. ``build_master`` is its composition root."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hashlib
import hmac
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import msgpack

from kiok.config import Settings
from kiok.core.addresses import in_url, reachable_host
from kiok.core.retention import days_ms
from kiok.dag.load import compiled_spec
from kiok.dag.spec import DagSpec
from kiok.errors import Conflict, InvalidInput, KiokError, NotFound, NotReady, StoreUnavailable
from kiok.master import pending_quota
from kiok.master.admission import Admission
from kiok.master.api.raft_snapshots import HttpSnapshotFetch
from kiok.master.archival import Archival, OrphanSweep
from kiok.master.audit import Auditor
from kiok.master.auth import AuthService
from kiok.master.auth_cache import IamEpoch
from kiok.master.backups import BackupService
from kiok.master.coordinator import Coordinator
from kiok.master.dag_views import DagViews
from kiok.master.iam import Iam
from kiok.master.intake import Intake
from kiok.master.leadership import Leadership
from kiok.master.log_gate import LogGate
from kiok.master.metrics import MasterMetrics
from kiok.master.notify import Notifier, NotifySettings
from kiok.master.peer_watch import PeerWatch
from kiok.master.pending_quota import PendingQuota
from kiok.master.recent_runs import RecentRuns
from kiok.master.retention import RetentionSweeper
from kiok.master.run_cache import RunViews
from kiok.master.run_terms import RunTermsCache
from kiok.master.scheduler import Scheduler
from kiok.observability.tracing import make_tracing
from kiok.security import egress
from kiok.security.egress import parse_networks
from kiok.security.kms import (
    Cipher,
    Keyring,
    WrongMasterKey,
    derive_root_key,
    keyring_digest,
)
from kiok.security.service_tokens import ServiceTokens
from kiok.store import commands as c
from kiok.store import keys, run_index
from kiok.store.apply_runs import takes_master_lines
from kiok.store.backup import KeyringBlob, StoreSource
from kiok.store.commandlog import CommandLog, LocalCommandLog
from kiok.store.effects import Effects
from kiok.store.encrypted import EncryptedKV
from kiok.store.joblog import APPLIED as JOBLOG_APPLIED
from kiok.store.joblog import ENCRYPTION_KEYS as JOBLOG_ENCRYPTION_KEYS
from kiok.store.joblog import REPLICATION as JOBLOG_REPLICATION
from kiok.store.joblog import SPACES as JOBLOG_SPACES
from kiok.store.joblog import JobLogStore
from kiok.store.keyring import (
    existing_keyring,
    key_source,
    master_key,
    new_keyring,
    operator_master_key,
    refuse_short_master_key,
)
from kiok.store.kv import RocksKV
from kiok.store.objects import s3_store_from_settings
from kiok.store.reader import StateReader
from kiok.store.replicated import (
    RaftCommandLog,
    RaftConfig,
    ReplicatedStores,
    parse_peers,
    unreachable_raft_port,
)
from kiok.store.restore import finish_interrupted

log = logging.getLogger(__name__)

#: Root keys (one PBKDF2 derivation each) a master keeps, by keyring salt (``root_key_for``).
_ROOT_KEYS_KEPT = 32
#: How often a key rotation is made again over rotations applied while it was proposed.
_ROTATE_TRIES = 5

#: Compiled run specs kept for API reads (oldest dropped first).
_SPEC_CACHE = 512


class MasterNode:
    def __init__(self, settings: Settings, clock_ms: Callable[[], int]) -> None:
        self.settings = settings
        self.clock_ms = clock_ms
        self.node_id = settings.get_str("kiok.master.id")
        self._rotating = asyncio.Lock()
        #: Where no webhook goes; a wrong entry stops the master before anything opens.
        self.webhook_blocked_networks = parse_networks(settings.get_str(egress.SETTING))
        #: Why this master cannot go on (``wait_failed``), once it cannot.
        self._failure: str | KiokError | None = None
        self._failed = asyncio.Event()
        #: The event loop, for a store failure met on another thread (Raft's, a backup's).
        self._loop = asyncio.get_running_loop()
        data = settings.data_dir
        peers_text = settings.get_str("kiok.master.peers")
        configured = operator_master_key(
            settings.get_str("kiok.master.key"),
            settings.get_str("kiok.kms.master.key.file"),
            several_masters=bool(peers_text),
        )
        # The master key is checked against the store's keyring before the store is opened
        # for writing: a wrong key changes nothing on disk.
        self._iterations = settings.get_int("kiok.kms.pbkdf2.iterations")
        if not configured and not (data / "master.key").exists() and (data / "state" / "CURRENT").exists():
            raise WrongMasterKey(
                "this data directory is encrypted with a master key: set kiok.kms.master.key.file "
                "(or KIOK_MASTER_KEY)"
            )
        self._passphrase = master_key(configured, data)
        source = key_source(
            settings.get_str("kiok.master.key"), settings.get_str("kiok.kms.master.key.file"), data
        )
        refuse_short_master_key(self._passphrase, source)
        #: Where the master key came from, as messages about it name it.
        self._key_source = source
        found = existing_keyring(data / "state", self._passphrase, self._iterations, source)
        self._roots: dict[bytes, bytes] = {}
        self._roots_lock = threading.Lock()
        self.keyring: Keyring | None = None
        self._root_key = b""
        self._raw = RocksKV(data / "state", keys.SPACES, "state store")
        self._raw.on_unavailable = self._store_unavailable
        self.kv = EncryptedKV(
            self._raw,
            keys.ENCRYPTION_KEYS,
        )
        self._joblog_raw = RocksKV(data / "joblog", JOBLOG_SPACES, "job-log store")
        self._joblog_raw.on_unavailable = self._store_unavailable
        self._joblog_kv = EncryptedKV(self._joblog_raw, JOBLOG_ENCRYPTION_KEYS)
        self.joblog = JobLogStore(self._joblog_kv)
        self.archival = Archival(
            lambda: s3_store_from_settings(settings, "kiok.joblog.s3", self.reader.connection),
            self._joblog_cipher,
            interval_s=settings.get_int("kiok.joblog.flush.interval.ms") / 1000,
            orphans=OrphanSweep(
                known_run=lambda run_id: self.reader.run_header(run_id) is not None,
                restored_at=lambda: self.backups.restored_at_ms(),
                grace_ms=settings.get_int("kiok.joblog.s3.orphan.grace.ms"),
            ),
        )
        self.joblog.attach_archive(self.archival.fetch)
        self.archival.holds = self.joblog.holds_segment
        # A restore a crash interrupted mid-swap is finished before anything reads the stores.
        applied = self._raw.get(keys.KMS, keys.RAFT_APPLIED.encode())
        redone = finish_interrupted(data, self.backup_sources(), 0 if applied is None else int(applied))
        #: Recorded once the stores are open on a single master (a cluster replays the entry).
        self._redone_restore = redone if not peers_text else None
        if found is not None or redone is not None:
            self._reload_keyring()
        self.raft: RaftCommandLog | None = None
        self.peer_watch: PeerWatch | None = None
        self.log: CommandLog
        if peers_text:
            try:
                peers = parse_peers(peers_text, self.node_id)
            except ValueError as e:
                raise InvalidInput(str(e)) from None
            unreachable = unreachable_raft_port(settings.get_str("kiok.master.host"), peers, self.node_id)
            if unreachable is not None:
                raise InvalidInput(unreachable)
            self.raft = RaftCommandLog(
                ReplicatedStores(self.kv, self._raw, self.joblog, self._joblog_raw),
                RaftConfig(
                    master_id=self.node_id,
                    peers=peers,
                    directory=data / "raft",
                    master_key=self._passphrase,
                    election_timeout_s=(
                        settings.get_int("kiok.raft.election.timeout.min.ms") / 1000,
                        settings.get_int("kiok.raft.election.timeout.max.ms") / 1000,
                    ),
                    compaction_entries=settings.get_int("kiok.raft.compaction.min.entries"),
                    defer_s=self._deference_s(),
                    snapshot_pause_s=settings.get_int("kiok.raft.snapshot.write.pause.ms") / 1000,
                    bind_host=settings.get_str("kiok.master.host"),
                ),
                on_applied=self._on_applied_sync,
                on_restored=self.stores_replaced,
                on_role_change=lambda: self.leadership.kick(),
                on_restore=lambda cmd, index, stopping: self.backups.apply_replicated(cmd, index, stopping),
                on_halt=self._halt,
                snapshot_url=lambda: self.admin_url,
                fetch_snapshot=HttpSnapshotFetch(
                    lambda: self.forward_token, settings.get_str("kiok.tls.ca") or None
                ),
            )
            self.log = self.raft
            self.peer_watch = PeerWatch(self.raft)
        else:
            self.log = LocalCommandLog(self.kv)
        self.reader = StateReader(self.kv)
        #: What the coordinator and the notifier need of each unfinished run's spec.
        self.run_terms = RunTermsCache(self.reader.run_spec)
        self.pending_quota = PendingQuota(self.reader, settings.get_int(pending_quota.SETTING))
        #: Moves on every IAM change this master applies: its authorisation caches follow.
        self.iam_epoch = IamEpoch()
        self.metrics = MasterMetrics(self)
        self.tracing = make_tracing(settings, self.node_id)
        self.log_gate = LogGate(self.reader)
        self.intake = Intake(
            self.log,
            self.log_gate,
            self.joblog,
            clock_ms,
            replicated=self.raft is not None,
            on_refused_log=self.metrics.stale_log_batches.inc,
        )
        self.auth = AuthService(
            self.log,
            self.reader,
            clock_ms,
            access_ttl_ms=settings.get_int("kiok.admin.token.access.expiry.ms"),
            refresh_ttl_ms=settings.get_int("kiok.admin.token.refresh.expiry.ms"),
            session_max_ms=settings.get_int("kiok.admin.session.max.ms"),
            max_failures=settings.get_int("kiok.auth.login.max.failures"),
            window_ms=settings.get_int("kiok.auth.login.window.seconds") * 1000,
            max_failures_per_address=settings.get_int("kiok.auth.login.max.failures.per.address"),
            hash_concurrency=settings.get_int("kiok.auth.password.hash.concurrency"),
            hash_queue_max=settings.get_int("kiok.auth.password.hash.queue.max"),
            epoch=self.iam_epoch,
        )
        self.coordinator = self._new_coordinator(term=1)
        self.admission = Admission(self.log, self.reader, clock_ms)
        self.audit = Auditor(self.log, clock_ms)
        self.iam = Iam(self.reader, self.iam_epoch)
        self.auth.audit = self.audit.record
        self.auth.service_tokens = ServiceTokens(
            settings.get_str("kiok.internal.auth.tokens"), settings.get_str("kiok.internal.auth.token.file")
        )
        self.scheduler = self._new_scheduler()
        self.retention = self._new_retention()
        self.admin_address = (
            f"{settings.get_str('kiok.master.host')}:{settings.get_int('kiok.master.admin.port')}"
        )
        advertised = in_url(
            reachable_host(
                settings.get_str("kiok.master.advertise.host") or settings.get_str("kiok.master.host")
            )
        )
        scheme = "https" if settings.get_str("kiok.tls.cert") else "http"
        #: Where the other masters reach this one (forwarded writes, worker redirects).
        self.admin_url = f"{scheme}://{advertised}:{settings.get_int('kiok.master.admin.port')}"
        self.internal_address = f"{advertised}:{settings.get_int('kiok.master.internal.port')}"
        self.notifier = self._new_notifier()
        self.backups = BackupService(self, clock_ms)
        #: The leader's loops of a single master (``restart_coordination`` replaces them).
        self._coordination: list[asyncio.Task[Any]] = []
        self.leadership = Leadership(self)
        self.log.subscribe(self._on_effects)
        self._tasks: list[asyncio.Task[Any]] = []
        self._started = False
        #: The cluster opened once (``cluster_opened``), and a proposal recording it is under way.
        self._opened = False
        self._opening = False
        self._specs: dict[str, DagSpec] = {}
        #: Encoded run views for ``GET /api/v1/runs/{id}`` (the leader's coordinator knows
        #: why a run waits; a new term brings a new coordinator).
        self.run_views = RunViews(
            self.reader, self.run_spec, lambda run_id: self.coordinator.waiting.get(run_id), clock_ms
        )
        #: Each DAG's newest runs as ``GET /api/v1/dags?lastRuns=N`` shows them.
        self.recent_runs = RecentRuns(self.reader)
        #: Every DAG's view as ``GET /api/v1/dags`` shows it.
        self.dag_views = DagViews(self.reader)
        #: Called with a worker id when its credential is revoked (the internal server
        #: registers one that drops the connection).
        self.revoke_hooks: list[Callable[[str], None]] = []
        #: Called when this master stops leading (the internal server drops its workers).
        self.demotion_hooks: list[Callable[[], None]] = []

    @property
    def forward_token(self) -> str:
        """What this master presents when it forwards to the leader: a configured service
        token, else one every master derives from the shared master key."""
        tokens = self.auth.service_tokens
        return (tokens.current() if tokens is not None else None) or self._derived_service_token

    def accepts_service_token(self, token: str) -> bool:
        tokens = self.auth.service_tokens
        if tokens is not None and tokens.accepts(token):
            return True
        return self.raft is not None and hmac.compare_digest(
            token.encode(), self._derived_service_token.encode()
        )

    @functools.cached_property
    def _derived_service_token(self) -> str:
        return hmac.new(self._passphrase.encode(), b"kiok-master-forwarding", hashlib.sha256).hexdigest()

    def _new_coordinator(self, term: int) -> Coordinator:
        return Coordinator.for_settings(
            self.settings,
            self.log,
            self.reader,
            self.append_log,
            self.clock_ms,
            term=term,
            tracing=self.tracing.enabled,
            terms=self.run_terms,
        )

    def _new_scheduler(self) -> Scheduler:
        return Scheduler(
            self.log,
            self.reader,
            self.clock_ms,
            tick_ms=self.settings.get_int("kiok.scheduler.tick.interval.ms"),
            catchup_max_runs=self.settings.get_int("kiok.scheduler.catchup.max.runs"),
            pending_quota=self.pending_quota,
        )

    def _new_retention(self) -> RetentionSweeper:
        return RetentionSweeper(
            self.log,
            self.reader,
            self.clock_ms,
            runs_ms=days_ms(float(self.settings["kiok.retention.runs.days"])),
            logs_ms=days_ms(float(self.settings["kiok.retention.logs.days"])),
            interval_ms=self.settings.get_int("kiok.retention.sweep.interval.ms"),
            batch=self.settings.get_int("kiok.retention.sweep.batch.runs"),
            audit_ms=days_ms(float(self.settings["kiok.retention.audit.days"])),
        )

    def _new_notifier(self) -> Notifier:
        get = self.settings.get_int
        return Notifier(
            self.log,
            self.reader,
            self.clock_ms,
            self.run_log,
            NotifySettings(
                max_attempts=max(1, get("kiok.notify.max.attempts")),
                retry_initial_ms=max(1, get("kiok.notify.retry.initial.ms")),
                retry_max_ms=max(1, get("kiok.notify.retry.max.ms")),
                timeout_s=max(1, get("kiok.notify.timeout.ms")) / 1000,
                interval_s=max(1, get("kiok.notify.check.interval.ms")) / 1000,
                link_base=self.settings.get_str("kiok.notify.link.base.url") or self.admin_url,
                blocked_networks=self.webhook_blocked_networks,
            ),
            terms=self.run_terms,
        )

    @property
    def maintenance_retry_after_s(self) -> int:
        """``Retry-After`` of a request refused in maintenance mode."""
        return max(1, self.settings.get_int("kiok.cluster.maintenance.retry.after.seconds"))

    def _deference_s(self) -> float:
        """Sticky leadership: after a restart, a master that was not the last leader holds
        back from campaigning for the deference window."""
        window = self.settings.get_int("kiok.master.leader.deference.window.ms")
        if window <= 0 or self.keyring is None:
            return 0.0
        last = StateReader(self.kv).last_leader()
        if last is None or last.get("master") == self.node_id:
            return 0.0
        return window / 1000

    def run_spec(self, run_id: str) -> DagSpec:
        """The run's compiled spec (immutable per run, so parsed once and cached)."""
        spec = self._specs.get(run_id)
        if spec is None:
            doc = self.reader.run_spec(run_id)
            if doc is None:
                raise NotFound(f"run {run_id!r} not found")
            spec = compiled_spec(doc)
            if len(self._specs) >= _SPEC_CACHE:
                self._specs.pop(next(iter(self._specs)))
            self._specs[run_id] = spec
        return spec

    def append_log(self, run_id: str, task_id: str, data: bytes) -> None:
        """Append to a task's job log: directly on a single master; with several masters
        through the replicated log, so that every master holds every log (a report proposed
        after it is committed after it)."""
        if self.raft is None:
            if not takes_master_lines(self.reader.run_header(run_id)):  # as ``AppendLogs`` decides
                return
            with contextlib.suppress(StoreUnavailable):  # said once; this master stops
                self.joblog.append(run_id, task_id, data)
        elif data:
            cmd = c.AppendLogs(at_ms=self.clock_ms(), chunks=[[run_id, task_id, data]])
            self.log.propose_nowait(cmd, fsync=False).add_done_callback(_log_lost)

    def run_log(self, run_id: str, text: str) -> None:
        """Append a line to a run's orchestration log (``__run__``)."""
        self.coordinator.run_log(run_id, text)

    def disconnect_worker(self, worker_id: str) -> None:
        """Close a worker's connection at once (its credential was revoked); its runs go
        back to the pool."""
        for hook in self.revoke_hooks:
            hook(worker_id)

    def _on_effects(self, fx: Effects) -> None:
        if fx.keyring_changed and self.raft is None:
            self._reload_keyring()
        self.iam_epoch.on_effects(fx)  # (a single master's: before any other request runs)
        if fx.signing_key_changed:
            self.auth.forget_signing_key()
        try:  # observing is best effort: a failure there must not keep runs from moving on
            self.metrics.observe(fx)
            if self.tracing.enabled and (self.raft is None or self.raft.is_leader):  # one span per event
                self.tracing.observe(fx, self.reader.run_header)
        except Exception:
            log.exception("metrics or traces of an applied batch failed; the batch is applied")
        self.log_gate.on_effects(fx)
        for worker_id in fx.workers_revoked:  # on every master: whichever holds its connection
            self.disconnect_worker(worker_id)
        self.coordinator.on_effects(fx)
        if fx.task_ends or fx.runs_finished:  # a final log: archive it now
            self.archival.kick()
        if fx.runs_finished:  # its notifications are in the outbox
            self.notifier.kick()
        self.scheduler.on_effects(fx)
        if fx.dags_changed:
            self.scheduler.kick()
        if fx.maintenance_changed:  # pending runs go when it ends; skipped firings are logged
            self.coordinator.kick()
            self.scheduler.kick()
        for run_id in fx.runs_deleted:
            self._specs.pop(run_id, None)
        self.run_terms.on_effects(fx)
        if fx.restored is not None:  # a replicated restore replaced the state under every cache
            self._specs.clear()
            self.run_views.clear()
            self.recent_runs.clear()
            if self.raft is not None:
                self.leadership.retake()
        self.run_views.on_effects(fx)
        self.recent_runs.on_effects(fx)
        self.dag_views.on_effects(fx)
        if fx.log_appends and self.raft is None:  # replicated masters append them as they apply
            for run_id, task_id, data, _ in fx.log_appends:
                with contextlib.suppress(StoreUnavailable):  # said once; this master stops
                    self.joblog.append(run_id, task_id, data)
        if fx.log_deletes and self.raft is None:  # replicated masters delete them as they apply
            self.joblog.delete_runs(fx.log_deletes)
        if (fx.log_archived or fx.archive_forgotten) and self.raft is None:
            self.joblog.apply_archive_effects(fx)

    def log_commands(self) -> int:
        """Commands this master's store has applied since it started."""
        return int(getattr(self.log, "commands", 0))

    def api_gate(self) -> tuple[bool, str]:
        """Whether ``/api/v1`` answers (``ReadinessGate``), and why not: closed until the
        cluster first opens, then open for good but on a master starting, restoring or
        behind its leader (``Leadership.api_gate``)."""
        if not self._started:
            return False, "the master is starting"
        if self.backups.restore_problem is not None:
            return False, self.backups.restore_problem
        if self.raft is not None:
            return self.leadership.api_gate()
        if self.cluster_opened():
            return True, ""
        return self.workers_ready()

    def readiness(self) -> tuple[bool, str]:
        """``/readyz`` and ``/cluster/health``: the gate is open and, with several masters, a
        leader is known. A master cut off from its quorum still serves reads to whoever asks
        it, but a load balancer is told to send its clients elsewhere."""
        ready, why = self.api_gate()
        if ready and self.raft is not None and self.raft.leader_id is None:
            return False, "no leader is elected right now (this master serves reads only)"
        return ready, why

    def workers_ready(self) -> tuple[bool, str]:
        """Whether a worker is connected; the first time one is, the cluster opens for good
        (``OpenCluster``): a master whose workers are all gone later still answers, so their
        runs can be watched, cancelled and triggered (queued until a worker is back)."""
        if not any(w.info().connected for w in self.coordinator.workers.values()):
            return False, "no worker is connected (a cluster opens once at least one worker is ready)"
        self.open_cluster()
        return True, ""

    def cluster_opened(self) -> bool:
        """Whether the cluster has opened (``OpenCluster``); remembered, since it never closes
        again (a restored backup or an installed snapshot was taken from an open cluster)."""
        if not self._opened and self.keyring is not None:  # a new master gets it by replication
            self._opened = self.reader.cluster_opened()
        return self._opened

    def open_cluster(self) -> None:
        """Record the first full readiness in the (replicated) state, once; a proposal that
        fails is made again at the next check."""
        if self._opened or self._opening:
            return
        self._opening = True
        asyncio.get_running_loop().create_task(self._open_cluster())

    async def _open_cluster(self) -> None:
        try:
            await self.log.propose(c.OpenCluster(at_ms=self.clock_ms()))
        except KiokError as e:
            log.info("could not record the cluster as open yet: %s", e.message)
        finally:
            self._opening = False

    def _on_applied_sync(self, fx: Effects) -> None:
        """On the thread that applies replicated entries, before the next one is written."""
        self.iam_epoch.on_effects(fx)  # before the proposer hears the outcome
        if fx.signing_key_changed:
            self.auth.forget_signing_key()
        if fx.keyring_changed:
            try:
                self._reload_keyring()
            except WrongMasterKey as e:
                log.critical("%s: stopping", e.message)
                os.kill(os.getpid(), signal.SIGTERM)

    def _reload_keyring(self) -> None:
        """Load the store's keyring (installed or rotated, here or by another master)."""
        found = self._raw.get(keys.KMS, keys.KEYRING.encode())
        salt_raw = self._raw.get(keys.KMS, keys.KEYRING_SALT.encode())
        if found is None or salt_raw is None:
            return
        root = self.root_key_for(msgpack.unpackb(salt_raw))
        ring = Keyring.unwrap(msgpack.unpackb(found), root, self._key_source)
        self.keyring, self._root_key = ring, root
        self.kv.set_keyring(ring)
        self._joblog_kv.set_keyring(ring)
        # A store written before the run indexes (or restored from one) gets them now,
        # before anything reads it: once per store, a no-op after.
        run_index.build(self.kv)

    def root_key_for(self, salt: bytes) -> bytes:
        """The root key the master key derives with ``salt`` (a backup's keyring may have
        another salt than this store's). The last ``_ROOT_KEYS_KEPT`` are kept: a backup
        target may hold manifests with any salts (planted ones too), so the cache is bounded."""
        with self._roots_lock:  # the event loop, the Raft thread and a backup listing's thread
            root = self._roots.pop(salt, None)
            if root is not None:
                self._roots[salt] = root  # now the most recently used
                return root
        root = derive_root_key(self._passphrase, salt, self._iterations)
        with self._roots_lock:
            self._roots[salt] = root
            while len(self._roots) > _ROOT_KEYS_KEPT:
                del self._roots[next(iter(self._roots))]  # the least recently used
        return root

    def has_root_key(self, salt: bytes) -> bool:
        """Whether ``root_key_for(salt)`` would cost no key derivation."""
        return salt in self._roots

    def keyring_blob(self) -> KeyringBlob:
        """The keyring as the ``kms`` keyspace holds it, for a backup's manifest."""
        found = self._raw.get(keys.KMS, keys.KEYRING.encode())
        salt_raw = self._raw.get(keys.KMS, keys.KEYRING_SALT.encode())
        if self.keyring is None or found is None or salt_raw is None:
            raise NotReady("the store has no keyring yet")
        return KeyringBlob(self.keyring, msgpack.unpackb(salt_raw), msgpack.unpackb(found), self._root_key)

    def backup_sources(self) -> list[StoreSource]:
        """Every store a backup holds, the state store first; each keeps its own Raft
        applied index through a restore."""
        return [
            StoreSource("state", self._raw, keys.SPACES, keep=keys.STATE_KEPT_BY_RESTORE),
            StoreSource(
                "joblog", self._joblog_raw, JOBLOG_SPACES, keep=((JOBLOG_REPLICATION, JOBLOG_APPLIED),)
            ),
        ]

    async def restart_coordination(self, between: Callable[[], None]) -> None:
        """(Single master) Stop the leader's loops, call ``between`` (a restore replacing the
        stores' content), reload what is cached from the stores and start fresh loops over it.
        The connected workers stay and are handed to the new coordinator: runs they drive are
        claimed again or, after the reattach grace, reassigned (the failover rules)."""
        stopping = self._coordination
        for task in stopping:
            task.cancel()
        for task in stopping:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = [t for t in self._tasks if t not in stopping]
        workers = list(self.coordinator.workers.values())
        try:
            between()
        finally:
            self.stores_replaced()
            self._specs.clear()
            self.run_terms.clear()
            self.run_views.clear()
            self.recent_runs.clear()
            self.dag_views.clear()
            # In a context of their own: started within the restore's request, the loops would
            # carry its request id into every line they log from then on.
            self._coordination = contextvars.Context().run(self.start_leading, self.coordinator.term)
            self._tasks += self._coordination
            for handle in workers:
                # As a worker reconnecting would be: the runs it drives that the restored state
                # gives it stay with it; the others (not in the backup, or not its own
                # there) it stops. Left out, the first were reassigned at once (their tasks
                # killed, run again) and the second driven on unseen.
                handle.abandon(self.coordinator.reattach(handle.info().id, handle.held()))
                # ...and the drivers it keeps send their whole state: the restored records
                # may be older than theirs (tasks that ended after the backup was taken).
                handle.resync()
                self.coordinator.add_worker(handle)

    def _halt(self, why: str | KiokError) -> None:
        if self._failure is None:
            self._failure = why
        self._failed.set()

    def fence_stores(self, err: StoreUnavailable) -> None:
        """Both stores refuse every write from now on, with ``err``: the process stops, and
        nothing more reaches the data directory (a store that failed closes without a flush)."""
        self._raw.fail(err)
        self._joblog_raw.fail(err)

    def _store_unavailable(self, err: StoreUnavailable) -> None:
        """(Any thread) A store could not write: both are fenced, and this master stops."""
        self.fence_stores(err)
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._halt(err)
        else:
            self._loop.call_soon_threadsafe(self._halt, err)

    async def wait_failed(self) -> None:
        """Raises, saying why, once this master can no longer go on (its replicated log met
        an entry this version cannot apply; a store cannot write: ``StoreUnavailable``);
        never returns otherwise. The master's root awaits it with its servers, so the
        process stops with that line and exit code 1."""
        await self._failed.wait()
        if isinstance(self._failure, KiokError):
            raise self._failure
        raise RuntimeError(self._failure)

    def stores_replaced(self) -> None:
        """After a restore or a Raft snapshot install swapped the stores' content (on the Raft
        thread with several masters): reload the keyring they hold, forget the job-log sizes,
        the token signing key read before (tokens are the backup's: every master must sign and
        check alike) and every cached authorisation."""
        self._reload_keyring()
        self.joblog.forget_sizes()
        self.auth.forget_signing_key()
        self.iam_epoch.bump()
        self._opened = False  # read again from what the stores now hold

    async def rotate_key(self, name: str) -> int:
        """Make a new version of data key ``name`` current; returns the version. Data
        written under older versions still decrypts. Made from the keyring stored now and
        refused over any other (``RotateKey.base``): a rotation applied meanwhile (another
        request, another master's) is kept, and this one is made again over it. One at a
        time here: requests to this master queue rather than race."""
        async with self._rotating:
            return await self._rotate_key(name)

    async def _rotate_key(self, name: str) -> int:
        for _ in range(_ROTATE_TRIES):
            stored = self._raw.get(keys.KMS, keys.KEYRING.encode())
            if self.keyring is None or stored is None:
                raise NotReady("the store has no keyring yet")
            wrapped = msgpack.unpackb(stored)
            ring = Keyring.unwrap(wrapped, self._root_key, self._key_source).rotated(name)
            version = ring.current[name]
            try:
                await self.log.propose(
                    c.RotateKey(
                        at_ms=self.clock_ms(),
                        key=name,
                        version=version,
                        wrapped=ring.wrap(self._root_key),
                        base=keyring_digest(wrapped),
                    )
                )
            except Conflict:
                continue
            log.info("rotated data key %s to version %d", name, version)
            return version
        raise Conflict(f"key rotations kept racing this one ({_ROTATE_TRIES} tries): rotate {name} again")

    async def open_stores(self) -> None:
        """Install a keyring in a new store (a no-op for an existing one); with several
        masters the first leader's wins and every master loads it from the store."""
        if self.keyring is None:
            _, salt, wrapped, _ = new_keyring(self._passphrase, self._iterations)
            await self.log.propose(c.InstallKeyring(at_ms=self.clock_ms(), salt=salt, wrapped=wrapped))
            self._reload_keyring()

    async def bootstrap(self) -> None:
        """Open the stores and create the first administrator, once per cluster; seal a
        signing key an older kiok stored in plaintext (once per store: a new key)."""
        await self.open_stores()
        created = await self.auth.bootstrap(
            self.settings.get_str("kiok.iam.admin.user"), self.settings.get_str("kiok.iam.admin.password")
        )
        if created:
            log.info(
                "first bootstrap: created the administrator %r", self.settings.get_str("kiok.iam.admin.user")
            )
        await self.seal_signing_key()

    async def seal_signing_key(self) -> None:
        """(The leader) Replace a signing key an older kiok stored in plaintext, found at
        start, at a takeover or in a restored backup, by a new one stored encrypted."""
        if await self.auth.seal_signing_key():
            log.warning(
                "the token signing key was stored unencrypted (a store from an older kiok): replaced "
                "by a new one, stored encrypted; tokens issued before no longer work: sign in again"
            )

    async def take_lead(self, raft_term: int) -> int:
        """Commit ``LeaderElected`` for this master (once applied, so is every earlier entry)
        and return the term it leads workers under: above every term handed to them before,
        by this cluster or by the one a restored backup came from (``keys.WORKER_TERM``)."""
        term = await self.log.propose(c.leader_elected(self.clock_ms(), self.node_id, raft_term))
        return int(term)

    def start_leading(self, term: int) -> list[asyncio.Task[Any]]:
        """Fresh coordinator and scheduler for a leadership term; their tasks are returned."""
        self.run_terms.clear()  # a follower may have installed a snapshot meanwhile
        self.coordinator = self._new_coordinator(term)
        self.scheduler = self._new_scheduler()
        self.retention = self._new_retention()
        self.notifier = self._new_notifier()
        self.log_gate.clear()
        return self._run_coordination()

    def _joblog_cipher(self) -> Cipher:
        if self.keyring is None:
            raise NotReady("the store has no keyring yet")
        return Cipher(self.keyring, "joblog-encryption")

    def _run_coordination(self) -> list[asyncio.Task[Any]]:
        return [
            *self.archival.start_leading(self.log, self.joblog, self.clock_ms),
            asyncio.create_task(self.scheduler.run(), name="scheduler"),
            asyncio.create_task(self.coordinator.run(), name="coordinator"),
            asyncio.create_task(self.retention.run(), name="retention"),
            asyncio.create_task(self.notifier.run(), name="notifier"),
            asyncio.create_task(self.backups.run_schedule(), name="backup-schedule"),
        ]

    def demoted(self) -> None:
        for hook in self.demotion_hooks:
            hook()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._reload_service_tokens(), name="service-tokens")]
        if self.raft is None:
            await self.bootstrap()
            self.coordinator.term = await self.take_lead(1)
            if self._redone_restore is not None:
                await self.backups.record(self._redone_restore)
            self._coordination = self._run_coordination()
            self._tasks += self._coordination
        else:
            self.raft.start()
            self._tasks.append(asyncio.create_task(self.leadership.run(), name="leadership"))
            if self.peer_watch is not None:
                self._tasks.append(asyncio.create_task(self.peer_watch.run(), name="peer-watch"))
        self._started = True

    async def _reload_service_tokens(self) -> None:
        interval = max(1, self.settings.get_int("kiok.internal.auth.reload.interval.seconds"))
        while True:
            await asyncio.sleep(interval)
            if self.auth.service_tokens is not None:
                self.auth.service_tokens.reload()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.leadership.stop()
        self.auth.hashes.close()
        if self.raft is not None:
            self.raft.stop()
        self.joblog.close()
        self.kv.close()
        self.tracing.shutdown()


def _log_lost(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        # A worker's batch stays in its outbox (unacknowledged) and is sent again after it
        # reconnects; the master's own run-log lines are lost.
        log.info("a job-log batch was not replicated: %s", fut.exception())
