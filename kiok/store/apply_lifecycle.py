"""The data-lifecycle half of ``apply()``: maintenance mode, and deleting finished runs and
their job logs (retention, ``DELETE /api/v1/runs/{id}``).

Only finished runs are ever deleted: a PENDING or RUNNING run is refused (or, in a sweep's
batch, left alone), whatever the caller believed when it proposed the command. Everything
a run owns goes with it; the (DAG, fire time) marker that stops a cron interval firing twice
goes only once the DAG's watermark is past it (so the scheduler can never propose it again).
Job logs live in a separate store: ``Effects.log_deletes`` names the runs whose logs go; a
run whose logs alone go keeps its records, its header noting when (``logsPurgedMs``).
"""

from __future__ import annotations

from typing import Any

from kiok.core.states import TERMINAL_RUN_STATES
from kiok.errors import Conflict, NotFound
from kiok.store import commands as c
from kiok.store import keys as k
from kiok.store.effects import Effects
from kiok.store.run_index import unindex
from kiok.store.run_version import stamp_noted
from kiok.store.txn import Txn


def maintenance_on(txn: Txn) -> bool:
    record = txn.get(k.META, k.MAINTENANCE)
    return bool(record and record.get("enabled"))


def apply_set_maintenance(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.SetMaintenance)
    old = txn.get(k.META, k.MAINTENANCE) or {"enabled": False, "sinceMs": None, "untilMs": None, "by": ""}
    if bool(old.get("enabled")) == cmd.enabled:
        return dict(old, changed=False)
    if cmd.enabled:
        record = {"enabled": True, "sinceMs": cmd.at_ms, "untilMs": None, "by": cmd.by}
    else:
        record = dict(old, enabled=False, untilMs=cmd.at_ms, by=cmd.by)
    txn.put(k.META, k.MAINTENANCE, record)
    fx.maintenance_changed = True
    return dict(record, changed=True)


def apply_delete_runs(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.DeleteRuns)
    deleted: list[str] = []
    kept: list[str] = []
    for run_id in cmd.run_ids:
        run = txn.get(k.META, k.run(run_id))
        if run is None:
            if cmd.strict:
                raise NotFound(f"run {run_id!r} not found")
            kept.append(run_id)
            continue
        if run["state"] not in TERMINAL_RUN_STATES:
            if cmd.strict:
                raise Conflict(
                    f"run {run_id} is {run['state']}: only a finished run can be deleted (cancel it first)"
                )
            kept.append(run_id)
            continue
        _delete_run(txn, run, drop_notifications=cmd.drop_notifications)
        deleted.append(run_id)
        if not run.get("logsPurgedMs"):
            fx.log_deletes.append(run_id)
    fx.runs_deleted.extend(deleted)
    return {"deleted": deleted, "kept": kept}


def _delete_run(txn: Txn, run: dict[str, Any], *, drop_notifications: bool) -> None:
    run_id, dag_id = run["runId"], run["dagId"]
    for task_key, _ in list(txn.scan(k.META, k.tasks_prefix(run_id))):
        txn.delete(k.META, task_key)
    if drop_notifications:  # nothing is told of a run that is gone
        for notify_key, _ in list(txn.scan(k.META, f"{k.NOTIFY_PREFIX}{run_id}/")):
            txn.delete(k.META, notify_key)
    for key in (k.run(run_id), k.run_task_ids(run_id), k.run_spec(run_id), k.active_run(run_id)):
        txn.delete(k.META, key)
    unindex(txn, run)
    fire = run.get("scheduledMs")
    if fire is not None and txn.get(k.META, k.scheduled(dag_id, fire)) == run_id:
        dag = txn.get(k.META, k.dag(dag_id))
        # Past the watermark the scheduler never proposes this interval again; a deleted DAG
        # registered anew arms its schedule from then.
        if dag is None or fire <= dag["watermarkMs"]:
            txn.delete(k.META, k.scheduled(dag_id, fire))


def apply_purge_audit(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    """The audit log's oldest records, in the order they were written, up to the first one
    written at or after ``before_ms`` (a record stamped by a leader whose clock ran behind
    waits for a later sweep rather than be skipped over)."""
    assert isinstance(cmd, c.PurgeAudit)
    doomed: list[bytes] = []
    for key, record in txn.scan(k.IAM, k.AUDIT_PREFIX):
        if len(doomed) >= cmd.max_records or record["atMs"] >= cmd.before_ms:
            break
        doomed.append(key)
    for key in doomed:
        txn.delete(k.IAM, key)
    return {"purged": len(doomed)}


def apply_purge_run_logs(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.PurgeRunLogs)
    purged: list[str] = []
    for run_id in cmd.run_ids:
        run = txn.get(k.META, k.run(run_id))
        if run is None or run["state"] not in TERMINAL_RUN_STATES or run.get("logsPurgedMs"):
            continue
        run = dict(run, logsPurgedMs=cmd.at_ms)
        # The run view shows it (``logsPurgedAt``): a new version, so readers see it change.
        stamp_noted(run, fx)
        txn.put(k.META, k.run(run_id), run)
        fx.runs_changed.add(run_id)
        fx.log_deletes.append(run_id)
        purged.append(run_id)
    return {"purged": purged}
