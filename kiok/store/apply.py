"""``apply(txn, command, effects)``: the one deterministic function that changes state.

Nothing else writes the state store. ``apply`` reads and writes only through ``txn``, uses
no clock (commands carry ``at_ms``) and no randomness (commands carry it), so replaying the
same commands on any replica yields the same store. It raises a ``KiokError`` for a command
that must be refused (the caller's savepoint drops its writes); ``effects`` tells in-process
listeners (coordinator, waiters) what changed, after the batch is durable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any

from kiok.dag.load import compiled_spec
from kiok.dag.params import check_args
from kiok.errors import Conflict, DagPaused, InvalidInput, MaintenanceMode, NotFound
from kiok.security.kms import keyring_digest
from kiok.security.policy import ADMINS_GROUP, ADMINS_POLICY, FULL_ACCESS, is_attached, write_reaches_holders
from kiok.store import commands as c
from kiok.store import keys as k
from kiok.store.apply_admission import (
    apply_issue_join_token,
    apply_redeem_join_token,
    apply_revoke_worker,
)
from kiok.store.apply_backup import apply_restore_backup, apply_set_backup_cron
from kiok.store.apply_dags import apply_backfill, register_dag
from kiok.store.apply_lifecycle import (
    apply_delete_runs,
    apply_purge_audit,
    apply_purge_run_logs,
    apply_set_maintenance,
    maintenance_on,
)
from kiok.store.apply_notify import apply_finish_notification, apply_sla_miss
from kiok.store.apply_runs import (
    apply_assign,
    apply_cancel,
    apply_fail,
    apply_release,
    apply_report,
    apply_rerun,
    create_run,
    driver_holds,
    takes_master_lines,
)
from kiok.store.effects import Effects
from kiok.store.txn import Txn

__all__ = ["Effects", "apply"]


def apply(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    handler = _HANDLERS.get(type(cmd))
    if handler is None:
        raise NotFound(f"no handler for command {cmd.kind!r}")
    if type(cmd) in _IAM_CHANGES:  # the effects of a refused command are dropped
        fx.iam_changed = True
    return handler(txn, cmd, fx)


# --- IAM ----------------------------------------------------------------------------------


def _bootstrap(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.Bootstrap)
    if txn.get(k.IAM, k.BOOTSTRAP_MARKER) is not None:
        return {"bootstrapped": False}
    txn.put(
        k.IAM,
        k.user(cmd.admin_user),
        {
            "name": cmd.admin_user,
            "passwordHash": cmd.password_hash,
            "requirePasswordChange": cmd.require_password_change,
            "groups": [ADMINS_GROUP],
            "createdMs": cmd.at_ms,
        },
    )
    full = {"name": ADMINS_POLICY, "document": FULL_ACCESS, "createdMs": cmd.at_ms}
    txn.put(k.IAM, k.policy(ADMINS_POLICY), full)
    admins = {"name": ADMINS_GROUP, "policies": [ADMINS_POLICY], "createdMs": cmd.at_ms}
    txn.put(k.IAM, k.group(ADMINS_GROUP), admins)
    txn.put(k.IAM, k.SIGNING_KEY, cmd.signing_key)  # encrypted, as IAM is: never in ``kms``
    txn.put(k.IAM, k.BOOTSTRAP_MARKER, {"atMs": cmd.at_ms, "admin": cmd.admin_user})
    return {"bootstrapped": True}


def _seal_signing_key(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    """Only while the legacy plaintext key is there: a replay, or a second master's
    proposal, finds it gone and changes nothing (the key is not rotated twice)."""
    assert isinstance(cmd, c.SealSigningKey)
    if txn.get(k.KMS, k.LEGACY_SIGNING_KEY) is None:
        return {"sealed": False}
    if not isinstance(cmd.signing_key, bytes) or len(cmd.signing_key) < 32:
        raise InvalidInput("seal_signing_key: the new key is 32 random bytes or more")
    txn.delete(k.KMS, k.LEGACY_SIGNING_KEY)
    txn.put(k.IAM, k.SIGNING_KEY, cmd.signing_key)
    fx.signing_key_changed = True
    return {"sealed": True}


def _install_keyring(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.InstallKeyring)
    if txn.get(k.KMS, k.KEYRING) is not None:
        return {"installed": False}
    txn.put(k.KMS, k.KEYRING_SALT, cmd.salt)
    txn.put(k.KMS, k.KEYRING, cmd.wrapped)
    fx.keyring_changed = True
    return {"installed": True}


def _rotate_key(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.RotateKey)
    stored = txn.get(k.KMS, k.KEYRING)
    if stored is None:
        raise Conflict("the store has no keyring yet")
    if cmd.base and cmd.base != keyring_digest(stored):
        raise Conflict("another key rotation was applied meanwhile: rotate again")
    txn.put(k.KMS, k.KEYRING, cmd.wrapped)
    fx.keyring_changed = True
    return {"key": cmd.key, "version": cmd.version}


def _leader_elected(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    """Record who leads; with a ``term_floor``, hand the leader its term for workers (the
    result): one above the last handed out, or the floor (its clock) if that is higher."""
    assert isinstance(cmd, c.LeaderElected)
    record: dict[str, Any] = {"master": cmd.master, "term": cmd.term, "atMs": cmd.at_ms}
    worker_term = None
    if cmd.term_floor:
        if not c.is_floor(cmd.term_floor):
            raise InvalidInput(f"leader_elected: term_floor is a number in [0, {c.MAX_FENCE_FLOOR}]")
        worker_term = max((txn.get(k.KMS, k.WORKER_TERM) or 0) + 1, cmd.term_floor)
        txn.put(k.KMS, k.WORKER_TERM, worker_term)
        record["workerTerm"] = worker_term
    txn.put(k.META, k.LEADER, record)
    return worker_term


def _open_cluster(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    if txn.get(k.META, k.CLUSTER_OPENED) is None:
        txn.put(k.META, k.CLUSTER_OPENED, {"atMs": cmd.at_ms})
    return None


def _append_logs(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.AppendLogs)
    for chunk in cmd.chunks:
        if len(chunk) not in (3, 6, 7) or not isinstance(chunk[0], str) or not isinstance(chunk[1], str):
            raise InvalidInput(
                "append_logs: each chunk is [run id, task id, bytes(, worker, term, epoch(, offset))]"
            )
        if not isinstance(chunk[2], bytes):
            raise InvalidInput("append_logs: chunk data must be bytes")
        stream = None
        if len(chunk) >= 6:  # a worker's batch: taken only from the run's driver under its fence
            worker, term, epoch = chunk[3:6]
            if not (isinstance(worker, str) and _is_int(term) and _is_int(epoch)):
                raise InvalidInput("append_logs: a chunk's worker, term and epoch are a string and numbers")
            if len(chunk) == 7:  # with its offset in the driver's stream: replays are idempotent
                if not _is_int(chunk[6]) or chunk[6] < 0:
                    raise InvalidInput("append_logs: a chunk's offset is a number >= 0")
                stream = (term, epoch, chunk[6])
            if not driver_holds(txn.get(k.META, k.run(chunk[0])), worker, term, epoch):
                fx.stale_logs += 1
                continue
        elif not takes_master_lines(txn.get(k.META, k.run(chunk[0]))):
            continue
        fx.log_appends.append((chunk[0], chunk[1], chunk[2], stream))
    return None


def _archive_logs(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.ArchiveLogs)
    for seg in cmd.segments:
        if (
            len(seg) != 4
            or not (isinstance(seg[0], str) and isinstance(seg[1], str))
            or not (_is_int(seg[2]) and _is_int(seg[3]) and 0 <= seg[2] < seg[3])
        ):
            raise InvalidInput("archive_logs: each segment is [run id, task id, start, end] with start < end")
        fx.log_archived.append((seg[0], seg[1], seg[2], seg[3]))
    return None


def _forget_archived_runs(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.ForgetArchivedRuns)
    fx.archive_forgotten.extend(cmd.run_ids)
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _announce_master(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.AnnounceMaster)
    txn.put(
        k.META,
        k.master(cmd.master),
        {"adminUrl": cmd.admin_url, "internalAddress": cmd.internal_address, "atMs": cmd.at_ms},
    )
    return None


def _put_connection(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.PutConnection)
    old = txn.get(k.CONNECTIONS, k.connection(cmd.connection_id))
    txn.put(
        k.CONNECTIONS,
        k.connection(cmd.connection_id),
        {
            "id": cmd.connection_id,
            "type": cmd.type,
            "description": cmd.description,
            "properties": dict(cmd.properties),
            "createdMs": old["createdMs"] if old else cmd.at_ms,
            "updatedMs": cmd.at_ms,
        },
    )
    return {"connectionId": cmd.connection_id, "created": old is None}


def _delete_connection(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.DeleteConnection)
    if txn.get(k.CONNECTIONS, k.connection(cmd.connection_id)) is None:
        raise NotFound(f"connection {cmd.connection_id!r} not found")
    txn.delete(k.CONNECTIONS, k.connection(cmd.connection_id))
    return {"deleted": cmd.connection_id}


def _append_audit(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.AppendAudit)
    seq = (txn.get(k.IAM, k.AUDIT_COUNTER) or 0) + 1
    txn.put(k.IAM, k.AUDIT_COUNTER, seq)
    txn.put(
        k.IAM,
        k.audit(seq),
        {
            "seq": seq,
            "atMs": cmd.at_ms,
            "actor": cmd.actor,
            "action": cmd.action,
            "target": cmd.target,
            "address": cmd.address,
            "success": cmd.success,
            "detail": cmd.detail,
        },
    )
    return {"seq": seq}


def _put_user(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.PutUser)
    old = txn.get(k.IAM, k.user(cmd.name))
    if cmd.expect_existing is not None and cmd.expect_existing != (old is not None):
        change = "deleted" if old is None else "created"
        raise Conflict(f"user {cmd.name!r} was {change} meanwhile; try again")
    _expect(old, "groups", cmd.expect_groups, f"user {cmd.name!r}")
    _expect(old, "policies", cmd.expect_policies, f"user {cmd.name!r}")
    if old is None and not cmd.password_hash:
        raise InvalidInput(f"user {cmd.name!r} does not exist: a password is needed to create it")
    _require_existing(txn, k.group, "group", cmd.groups)
    _require_existing(txn, k.policy, "policy", cmd.policies)
    record = dict(old or {"name": cmd.name, "createdMs": cmd.at_ms, "requirePasswordChange": False})
    record.update(groups=list(cmd.groups), policies=list(cmd.policies))
    if cmd.password_hash:
        record.update(passwordHash=cmd.password_hash, passwordChangedMs=cmd.at_ms)
    if cmd.require_password_change is not None:
        record["requirePasswordChange"] = cmd.require_password_change
    txn.put(k.IAM, k.user(cmd.name), record)
    return {"user": cmd.name, "created": old is None}


def _put_group(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.PutGroup)
    if cmd.create_only and txn.get(k.IAM, k.group(cmd.name)) is not None:
        raise Conflict(f"group {cmd.name!r} already exists (If-None-Match: * creates only)")
    _expect(txn.get(k.IAM, k.group(cmd.name)), "policies", cmd.expect_policies, f"group {cmd.name!r}")
    _require_existing(txn, k.policy, "policy", cmd.policies)
    record = {"name": cmd.name, "policies": list(cmd.policies), "createdMs": cmd.at_ms}
    txn.put(k.IAM, k.group(cmd.name), record)
    return {"group": cmd.name}


def _put_policy(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.PutPolicy)
    if cmd.create_only and txn.get(k.IAM, k.policy(cmd.name)) is not None:
        raise Conflict(f"policy {cmd.name!r} already exists (If-None-Match: * creates only)")
    if cmd.unchecked_attach:
        _fence_unchecked_attach(txn, cmd.name, cmd.document)
    txn.put(k.IAM, k.policy(cmd.name), {"name": cmd.name, "document": cmd.document, "createdMs": cmd.at_ms})
    return {"policy": cmd.name}


def _fence_unchecked_attach(txn: Txn, name: str, document: dict[str, Any] | None) -> None:
    """A policy write whose caller's ``iam:AttachPolicy`` / ``iam:DetachPolicy`` the API did
    not check (it reached no holder then) is refused if it now would: the policy was attached
    between the check and this command (``document``: None for a deletion)."""
    old = txn.get(k.IAM, k.policy(name))
    holders = chain(txn.scan(k.IAM, k.user("")), txn.scan(k.IAM, k.group("")))
    attached = is_attached(name, (record for _, record in holders))
    if write_reaches_holders(old["document"] if old else None, document, attached):
        raise Conflict(f"policy {name!r} was attached meanwhile; try again")


def _expect(record: dict[str, Any] | None, field: str, expected: Iterable[str] | None, what: str) -> None:
    if expected is not None and sorted((record or {}).get(field) or []) != sorted(expected):
        raise Conflict(f"{what}: its {field} changed meanwhile; try again")


def _put_access_key(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.PutAccessKey)
    user = txn.get(k.IAM, k.user(cmd.user))
    if user is None:
        raise NotFound(f"user {cmd.user!r} not found")
    record = {
        "keyId": cmd.key_id,
        "user": cmd.user,
        # The user it was made for: a new user of the same name is another user.
        "userCreatedMs": user.get("createdMs"),
        "secretHash": cmd.secret_hash,
        "createdMs": cmd.at_ms,
    }
    txn.put(k.IAM, k.access_key(cmd.key_id), record)
    return {"accessKeyId": cmd.key_id}


def _delete_iam(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.DeleteIam)
    key = {"user": k.user, "group": k.group, "policy": k.policy, "accesskey": k.access_key}[cmd.what](
        cmd.name
    )
    if txn.get(k.IAM, key) is None:
        raise NotFound(f"{cmd.what} {cmd.name!r} not found")
    if cmd.what == "policy" and cmd.unchecked_attach:
        _fence_unchecked_attach(txn, cmd.name, None)
    txn.delete(k.IAM, key)
    if cmd.what == "user":
        for raw_key, record in list(txn.scan(k.IAM, k.ACCESS_KEY_PREFIX)):
            if record["user"] == cmd.name:
                txn.delete(k.IAM, raw_key)
    elif cmd.what == "group":
        _drop_references(txn, k.user(""), "groups", cmd.name)
    elif cmd.what == "policy":
        _drop_references(txn, k.user(""), "policies", cmd.name)
        _drop_references(txn, k.group(""), "policies", cmd.name)
    return {"deleted": cmd.name}


def _drop_references(txn: Txn, prefix: str, field: str, name: str) -> None:
    for key, record in list(txn.scan(k.IAM, prefix)):
        if name in (record.get(field) or ()):
            txn.put(k.IAM, key, dict(record, **{field: [n for n in record[field] if n != name]}))


def _require_existing(txn: Txn, key: Callable[[str], str], what: str, names: Iterable[str]) -> None:
    for name in names:
        if txn.get(k.IAM, key(name)) is None:
            raise InvalidInput(f"unknown {what} {name!r}")


def _set_password(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.SetPassword)
    user = txn.get(k.IAM, k.user(cmd.user))
    if user is None:
        raise NotFound(f"user {cmd.user!r} not found")
    user = dict(user, passwordHash=cmd.password_hash, requirePasswordChange=cmd.require_password_change)
    user["passwordChangedMs"] = cmd.at_ms
    txn.put(k.IAM, k.user(cmd.user), user)
    return None


# --- DAGs ---------------------------------------------------------------------------------


def _register_dag(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.RegisterDag)
    return register_dag(txn, cmd, fx)


def _delete_dag(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.DeleteDag)
    if txn.get(k.META, k.dag(cmd.dag_id)) is None:
        raise NotFound(f"DAG {cmd.dag_id!r} not found")
    txn.delete(k.META, k.dag(cmd.dag_id))
    fx.dags_changed.append(cmd.dag_id)
    return {"deleted": cmd.dag_id}


def _set_paused(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.SetDagPaused)
    record = txn.get(k.META, k.dag(cmd.dag_id))
    if record is None:
        raise NotFound(f"DAG {cmd.dag_id!r} not found")
    txn.put(k.META, k.dag(cmd.dag_id), dict(record, paused=cmd.paused, updatedMs=cmd.at_ms))
    fx.dags_changed.append(cmd.dag_id)
    return {"dagId": cmd.dag_id, "paused": cmd.paused}


def _create_run(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.CreateRun)
    record = txn.get(k.META, k.dag(cmd.dag_id))
    if record is None:
        raise NotFound(f"DAG {cmd.dag_id!r} not found (deleted or never registered)")
    if record["paused"]:
        raise DagPaused(f"DAG {cmd.dag_id!r} is paused; unpause it to trigger runs")
    if maintenance_on(txn):
        raise MaintenanceMode("maintenance mode is on: no new runs until it ends; retry later")
    spec = compiled_spec(record["spec"])
    args = check_args(spec.params, spec.param_rules, spec.allow_extra_args, cmd.args, stored=True)
    run_id = create_run(
        txn,
        record["spec"],
        cmd.trigger,
        args,
        None,
        cmd.at_ms,
        fx,
        dag_version=record["version"],
        trace=cmd.trace,
        by=cmd.by,
    )
    return {"runId": run_id}


def _fire_schedule(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.FireSchedule)
    record = txn.get(k.META, k.dag(cmd.dag_id))
    if record is None:
        raise Conflict(f"DAG {cmd.dag_id!r} was deleted")
    if record["paused"]:  # paused since the scheduler looked: what is due waits for the unpause
        return {"created": []}
    created = []
    # In maintenance mode the interval is skipped for good (the scheduler skips it too; this
    # catches a proposal that raced with the switch): only the watermark moves.
    if not maintenance_on(txn):
        for fire in cmd.fire_times:
            if txn.get(k.META, k.scheduled(cmd.dag_id, fire)) is not None:
                continue  # (DAG, fire time) already has its run
            trigger = "catchup" if cmd.catchup and fire != cmd.fire_times[-1] else "schedule"
            run_id = create_run(
                txn, record["spec"], trigger, {}, fire, cmd.at_ms, fx, dag_version=record["version"]
            )
            txn.put(k.META, k.scheduled(cmd.dag_id, fire), run_id)
            created.append(run_id)
    if cmd.watermark_ms > record["watermarkMs"]:
        txn.put(k.META, k.dag(cmd.dag_id), dict(record, watermarkMs=cmd.watermark_ms))
        fx.schedules_moved.append(cmd.dag_id)
    return {"created": created}


#: Commands that can change who a credential is or what it may do: users (their groups,
#: policies, passwords), groups, policies, access keys, the signing key, a restore. Every
#: master's authorisation caches are dropped when one is applied (``Effects.iam_changed``).
_IAM_CHANGES: frozenset[type[c.Command]] = frozenset(
    {
        c.Bootstrap,
        c.SealSigningKey,
        c.SetPassword,
        c.PutUser,
        c.PutGroup,
        c.PutPolicy,
        c.DeleteIam,
        c.PutAccessKey,
        c.RestoreBackup,
    }
)

_HANDLERS: dict[type[c.Command], Callable[[Txn, c.Command, Effects], Any]] = {
    c.Bootstrap: _bootstrap,
    c.SealSigningKey: _seal_signing_key,
    c.SetPassword: _set_password,
    c.InstallKeyring: _install_keyring,
    c.RotateKey: _rotate_key,
    c.LeaderElected: _leader_elected,
    c.AnnounceMaster: _announce_master,
    c.OpenCluster: _open_cluster,
    c.AppendLogs: _append_logs,
    c.AppendAudit: _append_audit,
    c.PutUser: _put_user,
    c.PutGroup: _put_group,
    c.PutPolicy: _put_policy,
    c.DeleteIam: _delete_iam,
    c.PutAccessKey: _put_access_key,
    c.PutConnection: _put_connection,
    c.DeleteConnection: _delete_connection,
    c.RegisterDag: _register_dag,
    c.DeleteDag: _delete_dag,
    c.SetDagPaused: _set_paused,
    c.CreateRun: _create_run,
    c.FireSchedule: _fire_schedule,
    c.AssignRun: apply_assign,
    c.ReleaseRun: apply_release,
    c.ReportTasks: apply_report,
    c.CancelRun: apply_cancel,
    c.FailRun: apply_fail,
    c.RerunRun: apply_rerun,
    c.Backfill: apply_backfill,
    c.IssueJoinToken: apply_issue_join_token,
    c.RedeemJoinToken: apply_redeem_join_token,
    c.RevokeWorker: apply_revoke_worker,
    c.SetMaintenance: apply_set_maintenance,
    c.SetBackupCron: apply_set_backup_cron,
    c.RestoreBackup: apply_restore_backup,
    c.DeleteRuns: apply_delete_runs,
    c.PurgeRunLogs: apply_purge_run_logs,
    c.PurgeAudit: apply_purge_audit,
    c.ArchiveLogs: _archive_logs,
    c.ForgetArchivedRuns: _forget_archived_runs,
    c.NotifySlaMiss: apply_sla_miss,
    c.FinishNotification: apply_finish_notification,
}
