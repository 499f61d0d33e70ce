"""The backup half of ``apply()``: the replicated backup schedule (``meta`` key
``cluster/backup-cron``), so every master knows it and a new leader's scheduler picks it up."""

from __future__ import annotations

from typing import Any

from kiok.core.cron import validate_cron
from kiok.errors import InvalidInput
from kiok.store import commands as c
from kiok.store import keys as k
from kiok.store.effects import Effects
from kiok.store.txn import Txn


def apply_set_backup_cron(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.SetBackupCron)
    if cmd.cron:
        try:
            validate_cron(cmd.cron)
        except ValueError as e:  # the API checks first; a stale or forged entry is refused alike
            raise InvalidInput(f"cron: {e}") from None
    record = {"cron": cmd.cron or None, "atMs": cmd.at_ms, "by": cmd.by}
    txn.put(k.META, k.BACKUP_CRON, record)
    return record
