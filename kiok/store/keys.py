"""Where things live in the state store: keyspaces and key layout, in one place.

Keyspaces (RocksDB column families): ``meta`` (DAGs, runs, schedules), ``iam`` (users,
bootstrap marker, join tokens and worker credentials by hash only, the token signing key),
``kms`` (the wrapped keyring and counters: nothing secret in plaintext), ``connections``.
Job logs live in a separate store. Sequence numbers are zero-padded hex so that byte order
is numeric order.
"""

from __future__ import annotations

META = "meta"
IAM = "iam"
KMS = "kms"
CONNECTIONS = "connections"
SPACES = (META, IAM, KMS, CONNECTIONS)
#: keyspace -> the data key that encrypts its values (``kms`` holds the wrapped keyring as is)
ENCRYPTION_KEYS = {
    META: "metadata-encryption",
    IAM: "metadata-encryption",
    CONNECTIONS: "connection-encryption",
}


def dag(dag_id: str) -> str:
    return f"dag/{dag_id}"


DAG_PREFIX = "dag/"


def run(run_id: str) -> str:
    return f"run/{run_id}"


def task(run_id: str, task_id: str) -> str:
    return f"task/{run_id}/{task_id}"


def tasks_prefix(run_id: str) -> str:
    return f"task/{run_id}/"


def run_task_ids(run_id: str) -> str:
    """The ids of a run's tasks; a task without a ``task`` key is unstarted."""
    return f"runtasks/{run_id}"


def run_spec(run_id: str) -> str:
    return f"runspec/{run_id}"


RUN_SEQ_COUNTER = "counter/runseq"


def run_by_seq(seq: int) -> str:
    return f"runs/{seq:016x}"


RUNS_BY_SEQ_PREFIX = "runs/"


def run_by_dag(dag_id: str, seq: int) -> str:
    return f"dagruns/{dag_id}/{seq:016x}"


def runs_by_dag_prefix(dag_id: str) -> str:
    return f"dagruns/{dag_id}/"


RUNS_BY_DAG_PREFIX = "dagruns/"


def run_by_state(state: str, seq: int) -> str:
    """(meta) Index: the runs in one state, by sequence number (``kiok.store.run_index``)."""
    return f"staterun/{state}/{seq:016x}"


def runs_by_state_prefix(state: str) -> str:
    return f"staterun/{state}/"


def run_by_dag_state(dag_id: str, state: str, seq: int) -> str:
    """(meta) Index: one DAG's runs in one state, by sequence number."""
    return f"dagstaterun/{dag_id}/{state}/{seq:016x}"


def runs_by_dag_state_prefix(dag_id: str, state: str) -> str:
    return f"dagstaterun/{dag_id}/{state}/"


#: (kms keyspace, plain) The version of the run indexes this store holds; below
#: ``kiok.store.run_index.VERSION`` they are built by a scan when the store is opened.
RUN_INDEX_VERSION = "sys/run-index"


def active_run(run_id: str) -> str:
    return f"active/{run_id}"


ACTIVE_PREFIX = "active/"


def notification(run_id: str, event: str, index: int, rerun: int = 0) -> str:
    """(meta) A notification due and not yet delivered (``kiok.core.notify.Notification``);
    ``rerun``: the re-run it is about (``kiok.core.notify.execution``), keyed apart from the
    earlier executions' notifications, which may still be waiting for delivery."""
    if rerun:
        return f"notify/{run_id}/r{rerun}/{event}/{index}"
    return f"notify/{run_id}/{event}/{index}"


NOTIFY_PREFIX = "notify/"


def dag_version(dag_id: str, version: int) -> str:
    """(meta) One registered version of a DAG: spec, source, who and when."""
    return f"{dag_versions_prefix(dag_id)}{version:010d}"


def dag_versions_prefix(dag_id: str) -> str:
    return f"dagver/{dag_id}/"


def scheduled(dag_id: str, fire_ms: int) -> str:
    return f"sched/{dag_id}/{fire_ms:016x}"


def connection(connection_id: str) -> str:
    return f"conn/{connection_id}"


CONNECTION_PREFIX = "conn/"


def group(name: str) -> str:
    return f"group/{name}"


def policy(name: str) -> str:
    return f"policy/{name}"


def access_key(key_id: str) -> str:
    return f"accesskey/{key_id}"


ACCESS_KEY_PREFIX = "accesskey/"


def user(name: str) -> str:
    return f"user/{name}"


AUDIT_COUNTER = "counter/audit"
AUDIT_PREFIX = "audit/"


def audit(seq: int) -> str:
    return f"audit/{seq:016x}"


BOOTSTRAP_MARKER = "sys/bootstrap"
#: (iam keyspace, encrypted) The key tokens are signed with (HS256): 32 random bytes.
SIGNING_KEY = "sys/signing-key"
#: (kms keyspace, plain) Where stores bootstrapped before ``SIGNING_KEY`` kept it,
#: unencrypted: ``SealSigningKey`` replaces it with a new, sealed one.
LEGACY_SIGNING_KEY = "jwt/signing-key"
KEYRING = "keyring"
KEYRING_SALT = "keyring-salt"

#: (kms keyspace, plain) The index of the last Raft entry applied to this store: entries at
#: or below it are skipped when the Raft journal is replayed after a restart.
RAFT_APPLIED = "raft/applied"
#: (kms keyspace) The last assignment epoch handed out, over all runs. Each assignment takes
#: the next, or its command's floor (the leader's clock) if that is higher (``apply_assign``).
#: A restore keeps the live value rather than the backup's (``MasterNode.backup_sources``): a
#: driver that was given a run after the backup was taken holds a fence that no assignment
#: after the restore can hand out again, so its delayed reports and logs stay stale. (Fresh
#: masters have no live value: there the floor alone is above that fence.)
FENCE_EPOCH = "fence/epoch"
#: (kms keyspace) The last leader term handed to workers (``LeaderElected``): each new leader
#: takes the next, or its clock in fence units if that is higher. Workers ignore a master
#: whose term is below one they have seen (a deposed leader), so fresh masters restoring a
#: backup must not start again from 1: their clock puts them above the lost cluster's terms,
#: and a restore keeps the live value, as it keeps ``FENCE_EPOCH``.
WORKER_TERM = "term/workers"
#: What a restore leaves in the state store as the live store has it (``StoreSource.keep``).
STATE_KEPT_BY_RESTORE = (
    (KMS, RAFT_APPLIED.encode()),
    (KMS, FENCE_EPOCH.encode()),
    (KMS, WORKER_TERM.encode()),
)
#: (meta) The last leader elected: ``{"master", "term", "atMs"}`` (Raft's term) and
#: ``"workerTerm"`` (``WORKER_TERM``); decides who defers at restart.
LEADER = "cluster/leader"
#: (meta) Set once every master and a worker were ready: from then on a quorum keeps it open.
CLUSTER_OPENED = "cluster/opened"


#: (meta) Maintenance mode (``cluster.maintenance.mode`` in the reference):
#: ``{"enabled", "sinceMs", "untilMs", "by"}`` — the current or last window.
MAINTENANCE = "cluster/maintenance"

#: (meta) When the leader takes backups: ``{"cron" (None: never), "atMs", "by"}``.
BACKUP_CRON = "cluster/backup-cron"

#: (meta) The last restore replicated to every master:
#: ``{"backupId", "manifestSha256", "atMs", "by", "raftIndex"}`` (written on top of the
#: restored state; ``raftIndex`` None on a single master).
LAST_RESTORE = "cluster/last-restore"


def master(master_id: str) -> str:
    """(meta) A master's announced addresses."""
    return f"master/{master_id}"


MASTER_PREFIX = "master/"


def join_token(token_hash: str) -> str:
    return f"jointoken/{token_hash}"


JOIN_TOKEN_PREFIX = "jointoken/"


def worker(worker_id: str) -> str:
    return f"worker/{worker_id}"


WORKER_PREFIX = "worker/"
