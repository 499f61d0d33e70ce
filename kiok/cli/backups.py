"""``kiok admin backup``, ``backups``, ``backup-cron`` and ``restore``: backups of every store
(docs/operations.md, "Backup and restore"). Attached to the ``kiok admin`` group."""

from __future__ import annotations

import json
from typing import Any

import click

from kiok.cli.client import CliError, segment
from kiok.cli.context import CliContext, json_option, pass_cli
from kiok.cli.output import emit_json, emit_table, text


@click.command("backup")
@json_option
@pass_cli
def backup(cli: CliContext) -> None:
    """Back up every store now (incremental over the newest backup); prints the backup id."""
    answer = cli.client().post("/api/v1/admin/backup")
    if cli.as_json:
        emit_json(answer)
        return
    click.echo(answer["backupId"])
    base = answer.get("incrementalBase")
    if base and base in (answer.get("pruned") or ()):
        base = f"{base}, since pruned: it held none of the files this backup uses"
    click.echo(
        f"{answer.get('files')} files, {answer.get('size')} bytes, {answer.get('uploadedBytes')} uploaded"
        f" (base: {base or 'none, a full backup'})",
        err=True,
    )
    for pruned in answer.get("pruned") or ():
        click.echo(f"pruned {pruned} (kiok.backup.keep)", err=True)


@click.command("backups")
@json_option
@pass_cli
def backups(cli: CliContext) -> None:
    """List the backups, newest first (and the last restore, if any)."""
    answer = cli.client().get("/api/v1/admin/backups")
    if cli.as_json:
        emit_json(answer)
        return
    items = answer.get("backups", [])
    if answer.get("targetSet") is False:
        click.echo("no backup target is set (kiok.backup.dir, or the kiok.backup.s3.* settings)")
    elif not items:
        click.echo("no backups")
    else:
        rejected = {str(r.get("id")) for r in answer.get("rejected") or ()}
        _backup_table(items, rejected)
    for rejected in answer.get("rejected") or ():
        click.echo(f"ignored {rejected.get('id')}: {rejected.get('problem')}", err=True)
    last = answer.get("lastRestore")
    if last:
        index = last.get("raftIndex")
        click.echo(
            f"last restore: {last.get('backupId')} at {last.get('time')} by {last.get('by') or '-'}"
            + (f" (raft entry {index})" if index else "")
        )


def base_cell(base: str | None, listed: set[str], rejected: set[str]) -> str:
    """The BASE column: the backup this one was incremental over, marked ``(pruned)`` when
    the target no longer holds it (``kiok.backup.keep``, or deleted by hand). A prune keeps
    every backup a listed one restores from, so such a base held none of the files it uses."""
    if not base:
        return "-"
    if base in listed or base in rejected:
        return base
    return f"{base} (pruned)"


def _backup_table(items: list[dict[str, Any]], rejected: set[str]) -> None:
    listed = {str(m.get("id")) for m in items}
    rows = [
        [
            text(m.get("id")),
            text(m.get("time")),
            text(m.get("size")),
            text(m.get("uploadedBytes")),
            ",".join(m.get("stores") or []),
            base_cell(m.get("incrementalBase"), listed, rejected),
        ]
        for m in items
    ]
    emit_table(["ID", "TIME", "SIZE", "UPLOADED", "STORES", "BASE"], rows)


@click.command("backup-cron")
@click.argument("cron", required=False)
@click.option("--clear", is_flag=True, help="Stop scheduled backups.")
@json_option
@pass_cli
def backup_cron(cli: CliContext, cron: str | None, clear: bool) -> None:
    """Show the backup schedule, set it to CRON (5 fields, UTC, e.g. "0 3 * * *"), or --clear it."""
    client = cli.client()
    if cron is not None and clear:
        raise CliError("give a CRON or --clear, not both")
    if cron is None and not clear:
        answer = client.get("/api/v1/admin/backup/cron")
    else:
        body = json.dumps({"cron": None if clear else cron}).encode()
        answer = client.request(
            "PUT", "/api/v1/admin/backup/cron", content=body, content_type="application/json"
        )
    if cli.as_json:
        emit_json(answer)
    else:
        click.echo(f"backup schedule: {answer.get('cron') or 'none'} (UTC)")
        if answer.get("lastError"):
            click.echo(f"last scheduled backup failed: {answer['lastError']}")


@click.command("restore")
@click.argument("backup_id", metavar="ID")
@click.option("--yes", is_flag=True, help="Confirm: every store is replaced by the backup's content.")
@json_option
@pass_cli
def restore(cli: CliContext, backup_id: str, yes: bool) -> None:
    """Replace every store with backup ID (verified first; destructive: needs --yes)."""
    if not yes:
        raise CliError(f"restoring replaces every store with backup {backup_id}'s content: add --yes")
    answer = cli.client().post(f"/api/v1/admin/backups/{segment(backup_id)}/restore", {"confirm": backup_id})
    if cli.as_json:
        emit_json(answer)
    else:
        click.echo(f"restored {answer['restored']} (taken {answer['time']}); sign in again if asked")


COMMANDS = (backup, backups, backup_cron, restore)
