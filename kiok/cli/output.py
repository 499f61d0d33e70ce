"""How the CLI prints: the ``--json`` document, aligned tables, times and durations.

Pure formatting apart from ``emit_json``/``emit_table``; none of it talks to the master.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import click

from kiok.errors import PasswordChangeRequired

NONE = "-"


def emit_json(doc: Any) -> None:
    """Print one JSON document (the server's answer, unchanged) on stdout."""
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))


def emit_json_line(doc: Any) -> None:
    """Print one JSON document on one line (for streams of documents)."""
    click.echo(json.dumps(doc, ensure_ascii=False, separators=(",", ":")))


class Failure(Protocol):
    """A kiok error or a client-side one (``CliError``): a wire code and a message."""

    code: str
    message: str


def emit_error(e: Failure, *, as_json: bool, file: str | None = None) -> None:
    """One error on stderr: ``error: [FILE: ]MESSAGE``, or with ``--json`` one document of the
    server's shape, ``{"error": {"code", "message"[, "file"]}}``. A server's message may quote
    hostile input, so it is shown ``visible`` (line breaks kept)."""
    message = "\n".join(visible(line) for line in e.message.split("\n"))
    if isinstance(e, PasswordChangeRequired):
        message = f"{message} (run `kiok change-password`)"
    if as_json:
        error = {"code": e.code, "message": message, **({"file": file} if file is not None else {})}
        click.echo(json.dumps({"error": error}, ensure_ascii=False), err=True)
    else:
        click.echo(f"error: {f'{file}: ' if file is not None else ''}{message}", err=True)


def visible(value: str) -> str:
    """``value`` with each character a terminal would act on or hide written as an escape
    (``\\x1b``, ``\\u202e``): control characters, escape sequences, bidi and zero-width marks.
    What the master sends comes from other users and from task output; printed raw, an escape
    sequence would drive the reader's terminal."""
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else _escaped(c) for c in value)


def _escaped(c: str) -> str:
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded. Cells are shown
    ``visible``."""
    rows = [[visible(c) for c in row] for row in rows]
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
    return visible(str(value))


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
    """``850ms``, ``12.3s``, ``5m``, ``4m05s``, ``2h``, ``2h03m``, ``1d``, ``1d04h``: two units at
    most, a zero second one left out."""
    if seconds < 1:
        return f"{max(seconds, 0) * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    s = int(seconds)
    if s < 3600:
        return _two_units(s // 60, "m", s % 60, "s")
    if s < 86400:
        return _two_units(s // 3600, "h", s % 3600 // 60, "m")
    return _two_units(s // 86400, "d", s % 86400 // 3600, "h")


def _two_units(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}{small:02d}{small_unit}" if small else f"{big}{big_unit}"


def ago(value: Any, now: datetime) -> str:
    """How long before ``now`` an API timestamp was: ``3s ago``; ``-`` when absent."""
    at = parse_time(value)
    if at is None:
        return NONE
    return f"{duration(max((now - at).total_seconds(), 0))} ago"


def waiting(why: Any) -> str | None:
    """A ``waiting`` explanation for a detail column: ``waiting: <why>``, without doubling the
    word when the explanation starts with it (``waiting for upstream: a``)."""
    if not why:
        return None
    text = str(why)
    return text if text.lower().startswith("waiting") else f"waiting: {text}"


def elapsed(started: Any, ended: Any, now: datetime) -> str:
    """How long something ran: ``ended - started``, or ``now - started`` and a ``+`` while running."""
    start = parse_time(started)
    if start is None:
        return NONE
    end = parse_time(ended)
    if end is None:
        return duration((now - start).total_seconds()) + "+"
    return duration((end - start).total_seconds())
