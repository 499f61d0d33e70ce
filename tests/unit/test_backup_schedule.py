"""The backup schedule: the pure due-decision (armed from leadership start, no back-fire) and
the replicated ``SetBackupCron`` command."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kiok.errors import InvalidInput
from kiok.master.backups import backup_due, check_cron
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.kv import MemoryKV
from kiok.store.txn import decode


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_a_backup_is_due_only_after_the_first_fire_time_since_arming() -> None:
    armed = ms("2024-05-01T02:59:30")
    assert not backup_due("0 3 * * *", armed, ms("2024-05-01T02:59:59"))
    assert backup_due("0 3 * * *", armed, ms("2024-05-01T03:00:00"))
    # A leader armed after 03:00 does not back-fire today's backup: tomorrow's is next.
    late = ms("2024-05-01T03:00:01")
    assert not backup_due("0 3 * * *", late, ms("2024-05-01T23:59:00"))
    assert backup_due("0 3 * * *", late, ms("2024-05-02T03:00:00"))
    assert not backup_due(None, armed, ms("2030-01-01T00:00:00"))


def test_check_cron_names_the_problem_and_blank_clears() -> None:
    assert check_cron(None) == "" and check_cron("  ") == ""
    assert check_cron(" 0 3 * * * ") == "0 3 * * *"
    with pytest.raises(InvalidInput, match="cron"):
        check_cron("every day")


async def test_the_schedule_is_a_replicated_setting() -> None:
    kv = MemoryKV(keys.SPACES)
    log = LocalCommandLog(kv)
    await log.propose(c.SetBackupCron(at_ms=5, cron="0 3 * * *", by="admin"))
    assert decode(kv.get(keys.META, keys.BACKUP_CRON.encode()) or b"") == {
        "cron": "0 3 * * *",
        "atMs": 5,
        "by": "admin",
    }
    await log.propose(c.SetBackupCron(at_ms=6, cron="", by="admin"))
    assert decode(kv.get(keys.META, keys.BACKUP_CRON.encode()) or b"")["cron"] is None
    with pytest.raises(InvalidInput):
        await log.propose(c.SetBackupCron(at_ms=7, cron="nope", by="x"))


async def test_a_replicated_restore_is_recorded_on_top_of_the_restored_state() -> None:
    kv = MemoryKV(keys.SPACES)
    log = LocalCommandLog(kv)
    seen: list[str | None] = []
    log.subscribe(lambda fx: seen.append(fx.restored))
    sha = "ab" * 32
    record = await log.propose(
        c.RestoreBackup(at_ms=9, backup_id="20260101T000000000Z-abc123", manifest_sha256=sha, by="admin")
    )
    assert record == {
        "backupId": "20260101T000000000Z-abc123",
        "manifestSha256": sha,
        "atMs": 9,
        "by": "admin",
        "raftIndex": None,
    }
    assert decode(kv.get(keys.META, keys.LAST_RESTORE.encode()) or b"") == record
    assert seen == ["20260101T000000000Z-abc123"]
    for bad in (
        c.RestoreBackup(at_ms=10, backup_id="../x", manifest_sha256=sha),
        c.RestoreBackup(at_ms=10, backup_id="ok", manifest_sha256="nope"),
    ):
        with pytest.raises(InvalidInput):
            await log.propose(bad)
