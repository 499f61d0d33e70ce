"""How the CLI prints: the ``--json`` document, aligned tables, times and durations.

Pure formatting apart from ``emit_json``/``emit_table``; none of it talks to the master.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

NONE = "-"


def emit_json(doc: Any) -> None:
    """Print one JSON document (the server's answer, unchanged) on stdout."""
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))


def emit_json_line(doc: Any) -> None:
    """Print one JSON document on one line (for streams of documents)."""
    click.echo(json.dumps(doc, ensure_ascii=False, separators=(",", ":")))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *rows]:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def emit_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    click.echo(table(headers, rows))


def text(value: Any) -> str:
    """A JSON scalar as a table cell: ``-`` for null or empty, ``yes``/``no`` for booleans."""
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 timestamp from the API (aware, UTC if unzoned), or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)  # the API speaks UTC


def duration(seconds: float) -> str:
    """``850ms``, ``12.3s``, ``4m05s``, ``2h03m``, ``1d04h``."""
    if seconds < 1:
        return f"{max(seconds, 0) * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def elapsed(started: Any, ended: Any, now: datetime) -> str:
    """How long something ran: ``ended - started``, or ``now - started`` and a ``+`` while running."""
    start = parse_time(started)
    if start is None:
        return NONE
    end = parse_time(ended)
    if end is None:
        return duration((now - start).total_seconds()) + "+"
    return duration((end - start).total_seconds())
