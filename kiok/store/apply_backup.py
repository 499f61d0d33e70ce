"""The backup half of ``apply()``: the replicated backup schedule (``meta`` key
``cluster/backup-cron``), so every master knows it and a new leader's scheduler picks it up;
and the record of a replicated restore. The restore's swap itself is not here: it replaces
whole stores from files, which the replicated log does on each master just before this
entry's commands are applied (``RaftCommandLog``); what is written here lands on top of the
restored state, alike on every master."""

from __future__ import annotations

import re
from typing import Any

from kiok.core.cron import validate_cron
from kiok.core.states import TaskRecord
from kiok.errors import InvalidInput
from kiok.ids import RUN_LOG_TASK
from kiok.store import commands as c
from kiok.store import keys as k
from kiok.store.apply_runs import takes_master_lines
from kiok.store.backup import valid_backup_id
from kiok.store.effects import Effects
from kiok.store.txn import Txn

_SHA256 = re.compile(r"[0-9a-f]{64}")


def apply_set_backup_cron(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.SetBackupCron)
    if cmd.cron:
        try:
            # The API checks it first, as new input; here as stored input (``stored``): a
            # replica applying an entry its leader took must not refuse it for a check that
            # leader's kiok had not yet (a rolling upgrade). What no schedule can be is
            # refused alike, from a stale or forged entry too.
            validate_cron(cmd.cron, stored=True)
        except ValueError as e:
            raise InvalidInput(f"cron: {e}") from None
    record = {"cron": cmd.cron or None, "atMs": cmd.at_ms, "by": cmd.by}
    txn.put(k.META, k.BACKUP_CRON, record)
    return record


def restore_well_formed(cmd: c.RestoreBackup) -> bool:
    """Whether the swap may be attempted at all (a malformed entry swaps nothing anywhere and
    is refused by ``apply_restore_backup``)."""
    return (
        valid_backup_id(cmd.backup_id)
        and _SHA256.fullmatch(cmd.manifest_sha256) is not None
        and (not cmd.signing_key or len(cmd.signing_key) >= 32)  # as ``SealSigningKey`` asks
    )


def apply_restore_backup(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.RestoreBackup)
    if not restore_well_formed(cmd):
        raise InvalidInput(
            "restore_backup: a backup id, its manifest's sha256 (64 hex digits) and, if any, a "
            "signing key of at least 32 bytes"
        )
    record = {
        "backupId": cmd.backup_id,
        "manifestSha256": cmd.manifest_sha256,
        "atMs": cmd.at_ms,
        "by": cmd.by,
        "raftIndex": cmd.raft_index or None,
    }
    txn.put(k.META, k.LAST_RESTORE, record)
    if cmd.signing_key:
        txn.put(k.IAM, k.SIGNING_KEY, cmd.signing_key)  # encrypted, as IAM is
        fx.signing_key_changed = True
    fx.restored = cmd.backup_id
    if cmd.mark_logs:
        _mark_unfinished_logs(txn, cmd.backup_id, fx)
    return record


def _mark_unfinished_logs(txn: Txn, backup_id: str, fx: Effects) -> None:
    """The job logs are the backup's too, so what an unfinished run's tasks printed, and its
    run log took, between the backup and the restore is gone from them, while a driver that
    goes on with the run (claimed again) appends after it: each such log says so where the
    gap is, rather than read as whole (found by the lifecycle probe). A task that had ended
    when the backup was taken has its whole log."""
    line = (
        f"\n[kiok] restored from backup {backup_id}: what was written to this log between that "
        "backup and the restore is not in it\n"
    ).encode()
    for key, _ in txn.scan(k.META, k.ACTIVE_PREFIX):
        run_id = key.decode()[len(k.ACTIVE_PREFIX) :]
        if not takes_master_lines(txn.get(k.META, k.run(run_id))):
            continue
        prefix = k.tasks_prefix(run_id)
        ended = {
            key.decode()[len(prefix) :]
            for key, raw in txn.scan(k.META, prefix)
            if TaskRecord.from_dict(raw).is_terminal
        }
        for task_id in [*(txn.get(k.META, k.run_task_ids(run_id)) or []), RUN_LOG_TASK]:
            if task_id not in ended:
                fx.log_appends.append((run_id, task_id, line, None))
