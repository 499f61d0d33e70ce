"""``kiok cluster``: the masters (which leads, in which term) and the connected workers with
their labels, slots busy and free, draining flag and last heartbeat, from ``GET /api/v1/cluster``.

``render_cluster`` and ``worker_table`` are pure; ``kiok workers list`` shows the same table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from kiok.cli.context import CliContext, json_option, pass_cli
from kiok.cli.output import NONE, ago, emit_json, table, text


@click.command()
@json_option
@pass_cli
def cluster(cli: CliContext) -> None:
    """Show the masters, the leader and its term, and the connected workers."""
    answer = cli.client().get("/api/v1/cluster")
    if cli.as_json:
        emit_json(answer)
    else:
        click.echo(render_cluster(answer, cli.runtime.now()))


def render_cluster(doc: Any, now: datetime) -> str:
    """``leader: m1 (term 3)``, then a table of masters and one of workers."""
    if not isinstance(doc, dict):
        return text(doc)
    masters = [m for m in doc.get("masters") or [] if isinstance(m, dict)]
    rows = [
        [text(m.get("id")), text(m.get("role")), text(m.get("address")), text(m.get("ready"))]
        for m in masters
    ]
    lines = [
        f"leader:  {text(doc.get('leader'))} (term {text(doc.get('term'))})",
        "",
        table(["MASTER", "ROLE", "ADDRESS", "READY"], rows) if rows else "no masters",
        "",
        worker_table(doc.get("workers"), now),
    ]
    return "\n".join(lines)


def worker_table(workers: Any, now: datetime) -> str:
    """One row per connected worker: slots as total, busy and free; the heartbeat as an age."""
    items = [w for w in workers or [] if isinstance(w, dict)]
    if not items:
        return "no workers connected"
    rows = [
        [
            text(w.get("id")),
            text(w.get("address")),
            ",".join(str(label) for label in w.get("labels") or []) or NONE,
            text(w.get("slots")),
            _busy(w),
            text(w.get("free")),
            text(w.get("draining")),
            text(w.get("connected")),
            ago(w.get("lastHeartbeat"), now),
        ]
        for w in items
    ]
    headers = ["WORKER", "ADDRESS", "LABELS", "SLOTS", "BUSY", "FREE", "DRAINING", "CONNECTED", "HEARTBEAT"]
    return table(headers, rows)


def _busy(worker: dict[str, Any]) -> str:
    slots, free = worker.get("slots"), worker.get("free")
    if isinstance(slots, int) and isinstance(free, int):
        return str(slots - free)
    return NONE
