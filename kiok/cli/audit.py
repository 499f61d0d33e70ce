"""``kiok audit``: the audit log, newest first, one page at a time (``GET /api/v1/admin/audit``).

When more records exist, ``more records: --cursor C`` goes to stderr, as ``kiok runs list``
does, so stdout stays the table alone.
"""

from __future__ import annotations

import click

from kiok.cli.context import CliContext, json_option, pass_cli
from kiok.cli.output import emit_json, emit_table, text


@click.command()
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="At most this many."
)
@click.option("--cursor", help="Continue from a previous page's nextCursor.")
@json_option
@pass_cli
def audit(cli: CliContext, limit: int, cursor: str | None) -> None:
    """Show the audit log (logins, password changes, IAM, connections, keys, workers)."""
    params: dict[str, str | int] = {"limit": limit}
    if cursor:
        params["cursor"] = cursor
    answer = cli.client().get("/api/v1/admin/audit", params=params)
    if cli.as_json:
        emit_json(answer)
        return
    entries = answer.get("entries", []) if isinstance(answer, dict) else []
    if not entries:
        click.echo("no audit records")
    else:
        rows = [
            [
                text(e.get("at")),
                text(e.get("actor")),
                text(e.get("action")),
                text(e.get("target")),
                text(e.get("address")),
                "ok" if e.get("success") else "FAILED",
                " ".join(text(e.get("detail")).split()),
            ]
            for e in entries
        ]
        emit_table(["AT", "ACTOR", "ACTION", "TARGET", "ADDRESS", "RESULT", "DETAIL"], rows)
    next_cursor = answer.get("nextCursor") if isinstance(answer, dict) else None
    if next_cursor:
        click.echo(f"more records: --cursor {next_cursor}", err=True)
