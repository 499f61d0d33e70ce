"""``kiok admin backup`` / ``backups`` against a fake master: a base the target no longer
holds (pruned by ``kiok.backup.keep``) is said to be so, not shown as if listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiok.cli.backups import base_cell
from tests.unit.test_cli_harness import FakeMaster, reply

OLD, MID, NEW = "20261207T045734198Z-52ddd9", "20261207T045734719Z-b28b58", "20261207T050610134Z-0ed147"


@pytest.fixture
def master(tmp_path: Path) -> FakeMaster:
    return FakeMaster(tmp_path / "config")


def _backup(backup_id: str, base: str | None) -> dict[str, object]:
    return {
        "id": backup_id,
        "time": "2026-12-07T05:06:10Z",
        "size": 10,
        "uploadedBytes": 5,
        "stores": ["state", "joblog"],
        "files": 3,
        "incrementalBase": base,
        "master": "m1",
    }


def test_base_cell() -> None:
    assert base_cell(None, {NEW}, set()) == "-"
    assert base_cell(OLD, {NEW, OLD}, set()) == OLD
    assert base_cell(MID, {NEW, OLD}, set()) == f"{MID} (pruned)"
    assert base_cell(MID, {NEW}, {MID}) == MID  # in the target, shown apart as not listed


def test_backups_marks_a_pruned_base(master: FakeMaster) -> None:
    listing = {"backups": [_backup(NEW, MID), _backup(OLD, None)], "rejected": [], "lastRestore": None}
    master.on("GET", "/api/v1/admin/backups", reply(200, listing))
    result = master.invoke(["admin", "backups"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["ID", "TIME", "SIZE", "UPLOADED", "STORES", "BASE"]
    assert lines[1].split()[0] == NEW and lines[1].endswith(f"{MID} (pruned)")
    assert lines[2].split()[0] == OLD and lines[2].endswith("-")


def test_backup_says_its_base_was_just_pruned(master: FakeMaster) -> None:
    answer = {"backupId": NEW, **_backup(NEW, MID), "pruned": [MID]}
    master.on("POST", "/api/v1/admin/backup", reply(201, answer))
    result = master.invoke(["admin", "backup"])
    assert result.exit_code == 0, result.output
    assert f"(base: {MID}, since pruned: it held none of the files this backup uses)" in result.output
    assert f"pruned {MID} (kiok.backup.keep)" in result.output


def test_backup_cron_says_the_last_scheduled_backup_failed(master: FakeMaster) -> None:
    """The API and the UI showed ``lastError``; the CLI printed only the schedule."""
    failed = {"cron": "0 3 * * *", "timezone": "UTC", "lastError": "the S3 bucket did not answer"}
    master.on("GET", "/api/v1/admin/backup/cron", reply(200, failed))
    result = master.invoke(["admin", "backup-cron"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "backup schedule: 0 3 * * * (UTC)\nlast scheduled backup failed: the S3 bucket did not answer\n"
    )
    master.on("GET", "/api/v1/admin/backup/cron", reply(200, {**failed, "lastError": None}))
    assert master.invoke(["admin", "backup-cron"]).output == "backup schedule: 0 3 * * * (UTC)\n"
