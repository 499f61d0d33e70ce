"""A master node: the state store and command log, auth, scheduler, coordinator and the
job-log store, wired together. ``build_master`` is its composition root."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from kiok.config import Settings
from kiok.dag.load import spec_from_document
from kiok.dag.spec import DagSpec
from kiok.errors import NotFound
from kiok.master.admission import Admission
from kiok.master.audit import Auditor
from kiok.master.auth import AuthService
from kiok.master.coordinator import Coordinator
from kiok.master.iam import Iam
from kiok.master.metrics import MasterMetrics
from kiok.master.scheduler import Scheduler
from kiok.security.kms import Keyring, WrongMasterKey
from kiok.security.service_tokens import ServiceTokens
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.effects import Effects
from kiok.store.encrypted import EncryptedKV
from kiok.store.joblog import LOGS, JobLogStore
from kiok.store.keyring import existing_keyring, master_key, new_keyring
from kiok.store.kv import RocksKV
from kiok.store.reader import StateReader

log = logging.getLogger(__name__)

#: Compiled run specs kept for API reads (oldest dropped first).
_SPEC_CACHE = 512


class MasterNode:
    def __init__(self, settings: Settings, clock_ms: Callable[[], int], *, node_id: str = "m1") -> None:
        self.settings = settings
        self.clock_ms = clock_ms
        self.node_id = node_id
        data = settings.data_dir
        # The master key is checked against the store's keyring before the store is opened
        # for writing: a wrong key changes nothing on disk.
        iterations = settings.get_int("kiok.kms.pbkdf2.iterations")
        configured = settings.get_str("kiok.master.key")
        if not configured and not (data / "master.key").exists() and (data / "state" / "CURRENT").exists():
            raise WrongMasterKey("this data directory is encrypted with a master key: set KIOK_MASTER_KEY")
        passphrase = master_key(configured, data)
        found = existing_keyring(data / "state", passphrase, iterations)
        self._new_keyring = None
        if found is None:
            self._new_keyring = new_keyring(passphrase, iterations)
            ring, root = self._new_keyring[0], self._new_keyring[3]
        else:
            ring, root = found
        self.keyring = ring
        self._root_key = root
        self.kv = EncryptedKV(
            RocksKV(data / "state", keys.SPACES),
            {
                keys.META: "metadata-encryption",
                keys.IAM: "metadata-encryption",
                keys.CONNECTIONS: "connection-encryption",
            },
        )
        self._joblog_kv = EncryptedKV(RocksKV(data / "joblog", [LOGS]), {LOGS: "joblog-encryption"})
        self.joblog = JobLogStore(self._joblog_kv)
        if found is not None:
            self._use_keyring(ring)
        self.log = LocalCommandLog(self.kv)
        self.reader = StateReader(self.kv)
        self.metrics = MasterMetrics()
        self.auth = AuthService(
            self.log,
            self.reader,
            clock_ms,
            access_ttl_ms=settings.get_int("kiok.admin.token.access.expiry.ms"),
            refresh_ttl_ms=settings.get_int("kiok.admin.token.refresh.expiry.ms"),
            max_failures=settings.get_int("kiok.auth.login.max.failures"),
            window_ms=settings.get_int("kiok.auth.login.window.seconds") * 1000,
        )
        self.coordinator = Coordinator(
            self.log,
            self.reader,
            self.joblog,
            clock_ms,
            reattach_grace_ms=settings.get_int("kiok.worker.heartbeat.timeout.ms"),
        )
        self.admission = Admission(self.log, self.reader, clock_ms)
        self.audit = Auditor(self.log, clock_ms)
        self.iam = Iam(self.reader)
        self.auth.audit = self.audit.record
        self.auth.service_tokens = ServiceTokens(
            settings.get_str("kiok.internal.auth.tokens"), settings.get_str("kiok.internal.auth.token.file")
        )
        self.scheduler = Scheduler(
            self.log,
            self.reader,
            clock_ms,
            tick_ms=settings.get_int("kiok.scheduler.tick.interval.ms"),
            catchup_max_runs=settings.get_int("kiok.scheduler.catchup.max.runs"),
        )
        self.admin_address = (
            f"{settings.get_str('kiok.master.host')}:{settings.get_int('kiok.master.admin.port')}"
        )
        self.log.subscribe(self._on_effects)
        self._tasks: list[asyncio.Task[Any]] = []
        self._started = False
        self._specs: dict[str, DagSpec] = {}
        #: Called with a worker id when its credential is revoked (the internal server
        #: registers one that drops the connection).
        self.revoke_hooks: list[Callable[[str], None]] = []

    def run_spec(self, run_id: str) -> DagSpec:
        """The run's compiled spec (immutable per run, so parsed once and cached)."""
        spec = self._specs.get(run_id)
        if spec is None:
            doc = self.reader.run_spec(run_id)
            if doc is None:
                raise NotFound(f"run {run_id!r} not found")
            spec = spec_from_document(doc)
            if len(self._specs) >= _SPEC_CACHE:
                self._specs.pop(next(iter(self._specs)))
            self._specs[run_id] = spec
        return spec

    def run_log(self, run_id: str, text: str) -> None:
        """Append a line to a run's orchestration log (``__run__``)."""
        self.coordinator.run_log(run_id, text)

    def disconnect_worker(self, worker_id: str) -> None:
        """Close a worker's connection at once (its credential was revoked); its runs go
        back to the pool."""
        for hook in self.revoke_hooks:
            hook(worker_id)

    def _on_effects(self, fx: Effects) -> None:
        self.metrics.observe(fx)
        self.coordinator.on_effects(fx)
        if fx.dags_changed:
            self.scheduler.kick()

    def readiness(self) -> tuple[bool, str]:
        if not self._started:
            return False, "the master is starting"
        if not any(w.info().connected for w in self.coordinator.workers.values()):
            return False, "no worker is connected (a cluster opens once at least one worker is ready)"
        return True, ""

    def _use_keyring(self, ring: Keyring) -> None:
        self.keyring = ring
        self.kv.set_keyring(ring)
        self._joblog_kv.set_keyring(ring)

    async def rotate_key(self, name: str) -> int:
        """Make a new version of data key ``name`` current; returns the version. Data
        written under older versions still decrypts."""
        ring = self.keyring.rotated(name)
        version = ring.current[name]
        await self.log.propose(
            c.RotateKey(at_ms=self.clock_ms(), key=name, version=version, wrapped=ring.wrap(self._root_key))
        )
        self._use_keyring(ring)
        log.info("rotated data key %s to version %d", name, version)
        return version

    async def open_stores(self) -> None:
        """Install the keyring of a new store (a no-op for an existing one)."""
        if self._new_keyring is not None:
            ring, salt, wrapped, _ = self._new_keyring
            await self.log.propose(c.InstallKeyring(at_ms=self.clock_ms(), salt=salt, wrapped=wrapped))
            self._use_keyring(ring)
            self._new_keyring = None

    async def start(self) -> None:
        await self.open_stores()
        created = await self.auth.bootstrap(
            self.settings.get_str("kiok.iam.admin.user"), self.settings.get_str("kiok.iam.admin.password")
        )
        if created:
            log.info(
                "first bootstrap: created the administrator %r", self.settings.get_str("kiok.iam.admin.user")
            )
        self._tasks = [
            asyncio.create_task(self._reload_service_tokens(), name="service-tokens"),
            asyncio.create_task(self.scheduler.run(), name="scheduler"),
            asyncio.create_task(self.coordinator.run(), name="coordinator"),
        ]
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
        self.joblog.close()
        self.kv.close()
