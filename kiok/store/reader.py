"""Read-only queries over the committed state, for the API, scheduler and coordinator.

Reads never go through the command log: they see what has been committed on this node.
Writes go only through ``CommandLog.propose``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kiok.core.readiness import UNSTARTED
from kiok.store import keys as k
from kiok.store.encrypted import EncryptedKV
from kiok.store.kv import KVStore
from kiok.store.txn import decode


@dataclass(frozen=True)
class RunQuery:
    """Which runs a list wants: all filters optional; ``since_ms``/``until_ms`` bound the
    creation time, ``[since, until)``."""

    dag_id: str | None = None
    state: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None


@dataclass(frozen=True)
class AuditQuery:
    """Which audit records a page wants: all filters optional. ``actor`` and ``action`` match
    exactly (``action`` may end in ``*``: a prefix, as ``iam:*``), ``success`` the outcome,
    ``since_ms``/``until_ms`` the record's time, ``[since, until)``."""

    actor: str | None = None
    action: str | None = None
    success: bool | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def matches(self, entry: dict[str, Any]) -> bool:
        if self.actor is not None and entry["actor"] != self.actor:
            return False
        if self.action is not None:
            wanted = self.action
            if wanted.endswith("*") and not entry["action"].startswith(wanted[:-1]):
                return False
            if not wanted.endswith("*") and entry["action"] != wanted:
                return False
        if self.success is not None and bool(entry["success"]) != self.success:
            return False
        at = int(entry["atMs"])
        if self.since_ms is not None and at < self.since_ms:
            return False
        return self.until_ms is None or at < self.until_ms


def access_key_is_current(key: dict[str, Any], user: dict[str, Any] | None) -> bool:
    """Whether an access key still belongs to its user: the user exists and is the one the
    key was made for (``userCreatedMs``; a key made before that was recorded belongs to an
    earlier user of that name when it is older than the user). A user deleted and created
    again under the same name does not get the old keys back."""
    if user is None:
        return False
    if "userCreatedMs" in key:
        return bool(key["userCreatedMs"] == user.get("createdMs"))
    return int(key.get("createdMs") or 0) >= int(user.get("createdMs") or 0)


class StateReader:
    def __init__(self, kv: KVStore) -> None:
        self._kv = kv
        #: ``active_runs``' headers by run id, with the stored bytes each was decoded from.
        self._active: dict[str, tuple[bytes, dict[str, Any]]] = {}

    def _get(self, space: str, key: str) -> Any:
        raw = self._kv.get(space, key.encode())
        return None if raw is None else decode(raw)

    # --- IAM -------------------------------------------------------------------------------

    def bootstrapped(self) -> bool:
        return self._get(k.IAM, k.BOOTSTRAP_MARKER) is not None

    def user(self, name: str) -> dict[str, Any] | None:
        return self._get(k.IAM, k.user(name))  # type: ignore[no-any-return]

    def access_key(self, key_id: str) -> dict[str, Any] | None:
        """The key record, live or not (``access_key_is_current`` tells)."""
        return self._get(k.IAM, k.access_key(key_id))  # type: ignore[no-any-return]

    def access_keys(self, user: str | None = None) -> list[dict[str, Any]]:
        """The live access keys (of ``user``, or of every user), by id."""
        owners: dict[str, dict[str, Any] | None] = {}
        live = []
        for _, raw in self._kv.scan(k.IAM, k.ACCESS_KEY_PREFIX.encode()):
            key = decode(raw)
            if user is not None and key["user"] != user:
                continue
            if key["user"] not in owners:
                owners[key["user"]] = self.user(key["user"])
            if access_key_is_current(key, owners[key["user"]]):
                live.append(key)
        return live

    def group(self, name: str) -> dict[str, Any] | None:
        return self._get(k.IAM, k.group(name))  # type: ignore[no-any-return]

    def policy(self, name: str) -> dict[str, Any] | None:
        return self._get(k.IAM, k.policy(name))  # type: ignore[no-any-return]

    def iam_records(self, what: str) -> Iterator[dict[str, Any]]:
        """Every user, group or policy (``what``: "user" | "group" | "policy")."""
        for _, raw in self._kv.scan(k.IAM, f"{what}/".encode()):
            yield decode(raw)

    def signing_key(self) -> bytes | None:
        """The key tokens are signed with: the sealed one, else (a store bootstrapped before
        it was sealed, not yet migrated by ``SealSigningKey``) the legacy plaintext one."""
        key = self._get(k.IAM, k.SIGNING_KEY)
        if key is None:
            key = self._get(k.KMS, k.LEGACY_SIGNING_KEY)
        return key  # type: ignore[no-any-return]

    def has_legacy_signing_key(self) -> bool:
        """Whether the store still holds its signing key in plaintext (``SealSigningKey``)."""
        return self._kv.get(k.KMS, k.LEGACY_SIGNING_KEY.encode()) is not None

    # --- worker admission (hashes only; see kiok.store.apply_admission) --------------------

    def join_token(self, token_hash: str) -> dict[str, Any] | None:
        return self._get(k.IAM, k.join_token(token_hash))  # type: ignore[no-any-return]

    def admitted_worker(self, worker_id: str) -> dict[str, Any] | None:
        return self._get(k.IAM, k.worker(worker_id))  # type: ignore[no-any-return]

    def admitted_workers(self) -> Iterator[dict[str, Any]]:
        """Every worker ever admitted (revoked ones too), by id."""
        for _, raw in self._kv.scan(k.IAM, k.WORKER_PREFIX.encode()):
            yield decode(raw)

    def audit(
        self,
        *,
        limit: int = 100,
        cursor: int | None = None,
        query: AuditQuery = AuditQuery(),
        scan_limit: int = 10_000,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Audit records matching ``query``, newest first, and the cursor of the next page.

        Records are in append order and their times follow it, so the scan stops at the first
        record older than ``query.since_ms``. A filtered page reads at most ``scan_limit``
        records: when they hold fewer than ``limit`` matches, the page is short (maybe empty)
        and its cursor continues after the last record read, so a rare match never makes one
        request scan the whole log."""
        after = k.audit(cursor).encode() if cursor is not None else None
        page: list[dict[str, Any]] = []
        last_seq: int | None = None
        scan = self._kv.scan(k.IAM, k.AUDIT_PREFIX.encode(), after=after, reverse=True)
        for scanned, (_, raw) in enumerate(scan):
            entry = decode(raw)
            if query.since_ms is not None and entry["atMs"] < query.since_ms:
                return page, None
            if len(page) == limit:
                return page, page[-1]["seq"]
            if scanned >= scan_limit:
                return page, last_seq
            last_seq = entry["seq"]
            if query.matches(entry):
                page.append(entry)
        return page, None

    def oldest_audit_ms(self) -> int | None:
        """When the oldest audit record kept was written (None: there is none)."""
        for _, raw in self._kv.scan(k.IAM, k.AUDIT_PREFIX.encode()):
            return int(decode(raw)["atMs"])
        return None

    # --- connections ---------------------------------------------------------------------

    def connection(self, connection_id: str) -> dict[str, Any] | None:
        return self._get(k.CONNECTIONS, k.connection(connection_id))  # type: ignore[no-any-return]

    def connections(self) -> Iterator[dict[str, Any]]:
        for _, raw in self._kv.scan(k.CONNECTIONS, k.CONNECTION_PREFIX.encode()):
            yield decode(raw)

    # --- masters ---------------------------------------------------------------------------

    def last_leader(self) -> dict[str, Any] | None:
        return self._get(k.META, k.LEADER)  # type: ignore[no-any-return]

    def cluster_opened(self) -> bool:
        return self._get(k.META, k.CLUSTER_OPENED) is not None

    def maintenance(self) -> dict[str, Any]:
        """Maintenance mode: ``{"enabled", "sinceMs", "untilMs", "by"}`` (the current or last
        window; ``sinceMs`` None when it was never on)."""
        record = self._get(k.META, k.MAINTENANCE)
        return record or {"enabled": False, "sinceMs": None, "untilMs": None, "by": ""}  # type: ignore[no-any-return]

    def masters(self) -> dict[str, dict[str, Any]]:
        """Announced masters by id: ``{"adminUrl", "internalAddress"}``."""
        prefix = k.MASTER_PREFIX.encode()
        return {key[len(prefix) :].decode(): decode(raw) for key, raw in self._kv.scan(k.META, prefix)}

    # --- DAGs ------------------------------------------------------------------------------

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        return self._get(k.META, k.dag(dag_id))  # type: ignore[no-any-return]

    def dags(self) -> Iterator[dict[str, Any]]:
        for _, raw in self._kv.scan(k.META, k.DAG_PREFIX.encode()):
            yield decode(raw)

    # --- runs ------------------------------------------------------------------------------

    def run_header(self, run_id: str) -> dict[str, Any] | None:
        """The run without its task records (cheap)."""
        return self._get(k.META, k.run(run_id))  # type: ignore[no-any-return]

    def run(self, run_id: str) -> dict[str, Any] | None:
        """The run with ``tasks``: task id -> TaskRecord dict, for every task of the run
        (an unstarted task has no stored record: it gets the PENDING one)."""
        run = self.run_header(run_id)
        if run is not None:
            prefix = k.tasks_prefix(run_id)
            stored = {
                key.decode()[len(prefix) :]: decode(raw)
                for key, raw in self._kv.scan(k.META, prefix.encode())
            }
            ids = self._get(k.META, k.run_task_ids(run_id)) or []
            run["tasks"] = {tid: stored.pop(tid, None) or UNSTARTED.to_dict() for tid in ids}
            run["tasks"].update(stored)  # a run stored before the id list: all its tasks are here
        return run

    def task_records_sealed(self, run_id: str) -> Iterator[tuple[str, bytes]]:
        """A run's task records by task id as stored: encrypted, when the store is. A cache
        of run views compares these bytes (a record rewritten gets new ones: a fresh nonce)
        and opens (``open_task_record``) only the records that changed: decrypting every
        record of a 500-task run costs ~2 ms, most of a read of a run in flight."""
        prefix = k.tasks_prefix(run_id)
        scan = self._kv.scan_sealed if isinstance(self._kv, EncryptedKV) else self._kv.scan
        for key, sealed in scan(k.META, prefix.encode()):
            yield key.decode()[len(prefix) :], sealed

    def open_task_record(self, run_id: str, task_id: str, sealed: bytes) -> bytes:
        """The encoded record (``kiok.store.txn.decode`` reads it) of bytes that
        ``task_records_sealed`` gave for ``task_id``."""
        if isinstance(self._kv, EncryptedKV):
            return self._kv.open(k.META, k.task(run_id, task_id).encode(), sealed)
        return sealed

    def task(self, run_id: str, task_id: str) -> dict[str, Any] | None:
        """One task's stored record (None while it is unstarted): cheaper than ``run``."""
        return self._get(k.META, k.task(run_id, task_id))  # type: ignore[no-any-return]

    def run_spec(self, run_id: str) -> dict[str, Any] | None:
        return self._get(k.META, k.run_spec(run_id))  # type: ignore[no-any-return]

    def pending_runs(self, dag_id: str, at_most: int) -> int:
        """How many runs of ``dag_id`` are PENDING, counted up to ``at_most`` (keys only)."""
        prefix = k.runs_by_dag_state_prefix(dag_id, "PENDING").encode()
        scan = self._kv.scan_sealed if isinstance(self._kv, EncryptedKV) else self._kv.scan
        n = 0
        for _ in scan(k.META, prefix):
            n += 1
            if n >= at_most:
                break
        return n

    def scheduled_run(self, dag_id: str, fire_ms: int) -> str | None:
        """The run that stands for ``dag_id``'s interval starting at ``fire_ms``, if any."""
        return self._get(k.META, k.scheduled(dag_id, fire_ms))  # type: ignore[no-any-return]

    def active_runs(self) -> list[dict[str, Any]]:
        """Every run not yet finished, oldest first (each a copy of its header: change it
        at will, but not the dicts inside it).

        The leader's loops call this on every run's end (the dispatch pass, the SLA check),
        so a backlog of queued runs would have each header decrypted and decoded again each
        time. The headers are kept with the bytes they were decoded from, and a header whose
        stored bytes did not change is not opened again: every write encrypts with a fresh
        nonce, so equal bytes are the same write (``EncryptedKV.scan_sealed``). Nothing is
        invalidated from outside, so this is never staler than the store."""
        kv = self._kv
        scan = kv.scan_sealed if isinstance(kv, EncryptedKV) else kv.scan
        get = kv.get_sealed if isinstance(kv, EncryptedKV) else kv.get
        opened = kv.open if isinstance(kv, EncryptedKV) else None
        before, kept = self._active, {}
        runs = []
        for key, _ in scan(k.META, k.ACTIVE_PREFIX.encode()):
            run_id = key.decode()[len(k.ACTIVE_PREFIX) :]
            header_key = k.run(run_id).encode()
            stored = get(k.META, header_key)
            if stored is None:
                continue
            entry = before.get(run_id)
            if entry is None or entry[0] != stored:
                raw = stored if opened is None else opened(k.META, header_key, stored)
                entry = (stored, decode(raw))
            kept[run_id] = entry
            runs.append(dict(entry[1]))
        self._active = kept
        runs.sort(key=lambda r: r["seq"])
        return runs

    def dag_versions(self, dag_id: str) -> list[dict[str, Any]]:
        """A DAG's kept versions, newest first (each with its spec and source)."""
        prefix = k.dag_versions_prefix(dag_id).encode()
        return [decode(raw) for _, raw in self._kv.scan(k.META, prefix, reverse=True)]

    def dag_version(self, dag_id: str, version: int) -> dict[str, Any] | None:
        return self._get(k.META, k.dag_version(dag_id, version))  # type: ignore[no-any-return]

    def notifications(self) -> list[dict[str, Any]]:
        """Every notification due and not yet delivered (``kiok.core.notify.Notification``
        dicts), in key order."""
        return [decode(raw) for _, raw in self._kv.scan(k.META, k.NOTIFY_PREFIX.encode())]

    def dags_with_runs(self) -> Iterator[str]:
        """Every DAG id that has stored runs (deleted DAGs too), in key order: one seek per DAG."""
        prefix = k.RUNS_BY_DAG_PREFIX.encode()
        after: bytes | None = None
        while True:
            found = next(iter(self._kv.scan(k.META, prefix, after=after)), None)
            if found is None:
                return
            dag_id = found[0][len(prefix) :].split(b"/", 1)[0]
            yield dag_id.decode()
            after = prefix + dag_id + b"/\xff"

    def dag_run_headers(self, dag_id: str, *, after_seq: int | None = None) -> Iterator[dict[str, Any]]:
        """A DAG's run headers oldest first (by sequence number), from past ``after_seq``."""
        after = k.run_by_dag(dag_id, after_seq).encode() if after_seq is not None else None
        for _, raw in self._kv.scan(k.META, k.runs_by_dag_prefix(dag_id).encode(), after=after):
            header = self.run_header(decode(raw))
            if header is not None:
                yield header

    def dag_run_headers_newest(self, dag_id: str, limit: int) -> list[dict[str, Any]]:
        """A DAG's newest ``limit`` run headers, newest first."""
        out: list[dict[str, Any]] = []
        for _, raw in self._kv.scan(k.META, k.runs_by_dag_prefix(dag_id).encode(), reverse=True):
            if len(out) >= limit:
                break
            header = self.run_header(decode(raw))
            if header is not None:
                out.append(header)
        return out

    def run_headers_newest(self) -> Iterator[dict[str, Any]]:
        """Every run header, newest first (by sequence number); cheap, no task records."""
        for _, raw in self._kv.scan(k.META, k.RUNS_BY_SEQ_PREFIX.encode(), reverse=True):
            header = self.run_header(decode(raw))
            if header is not None:
                yield header

    def run_page(
        self,
        query: RunQuery,
        *,
        limit: int = 50,
        cursor: int | None = None,
        visible: Callable[[dict[str, Any]], bool] | None = None,
        scan_limit: int | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Run headers (no task records) newest first, through the index that fits ``query``
        (``kiok.store.run_index``): a page costs about ``limit`` reads whatever the size of
        the history. ``cursor`` is the sequence number to continue below; returns the page
        and the cursor of the next page (None when there is none). ``visible`` leaves runs
        out of the page, as the query does. Once ``scan_limit`` runs were read and left out,
        the page ends short (maybe empty) with a cursor after the last run read, so that
        runs the caller may not see never make one request read the whole history."""
        if query.dag_id is not None and query.state is not None:
            prefix = k.runs_by_dag_state_prefix(query.dag_id, query.state)
        elif query.dag_id is not None:
            prefix = k.runs_by_dag_prefix(query.dag_id)
        elif query.state is not None:
            prefix = k.runs_by_state_prefix(query.state)
        else:
            prefix = k.RUNS_BY_SEQ_PREFIX
        below = cursor
        if query.until_ms is not None:
            first_after = self._first_seq_created_at(query.until_ms)
            if first_after is not None:
                below = first_after if below is None else min(below, first_after)
        after = f"{prefix}{below:016x}".encode() if below is not None else None
        page: list[dict[str, Any]] = []
        left_out = 0
        last_seq: int | None = None
        for key, raw in self._kv.scan(k.META, prefix.encode(), after=after, reverse=True):
            if scan_limit is not None and left_out >= scan_limit and last_seq is not None:
                return page, last_seq
            last_seq = int(key[len(prefix.encode()) :], 16)
            header = self.run_header(decode(raw))
            if header is None:
                left_out += 1
                continue
            if query.since_ms is not None and header["createdMs"] < query.since_ms:
                break  # runs are numbered in creation order: every older one is earlier still
            if (query.until_ms is not None and header["createdMs"] >= query.until_ms) or (
                visible is not None and not visible(header)
            ):
                left_out += 1
                continue
            if len(page) == limit:
                return page, page[-1]["seq"]
            page.append(header)
        return page, None

    def _first_seq_created_at(self, at_ms: int) -> int | None:
        """The sequence number of the oldest run created at or after ``at_ms`` (None: no
        such run), by bisection over ``runs/<seq>``: sequence numbers follow creation time."""
        lo, hi = 1, int(self._get(k.META, k.RUN_SEQ_COUNTER) or 0) + 1
        while lo < hi:
            mid = (lo + hi) // 2
            after = k.run_by_seq(mid - 1).encode()
            found = next(iter(self._kv.scan(k.META, k.RUNS_BY_SEQ_PREFIX.encode(), after=after)), None)
            header = None if found is None else self.run_header(decode(found[1]))
            if header is None:
                hi = mid
            elif header["createdMs"] >= at_ms:
                hi = min(mid, header["seq"])
            else:
                lo = header["seq"] + 1
        return None if hi > int(self._get(k.META, k.RUN_SEQ_COUNTER) or 0) else lo

    def runs(
        self,
        *,
        dag_id: str | None = None,
        state: str | None = None,
        limit: int = 50,
        cursor: int | None = None,
        visible: Callable[[dict[str, Any]], bool] | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Like ``run_page``, each run with its task records (``run``)."""
        headers, next_seq = self.run_page(
            RunQuery(dag_id=dag_id, state=state), limit=limit, cursor=cursor, visible=visible
        )
        page = [run for run in (self.run(h["runId"]) for h in headers) if run is not None]
        return page, next_seq
