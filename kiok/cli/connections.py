"""``kiok connections``: list, show, set (create or replace) and delete connections, the
credentials tasks use as ``${conn.<id>.<key>}``. Values go in and never come out: the master
shows ``***`` for every one.

A value can be typed at a hidden prompt (``--prompt KEY``) so it stays out of the shell
history and the process list; ``-p KEY=VALUE`` is for values that are no secret.
"""

from __future__ import annotations

from typing import Any

import click

from kiok.cli.client import segment
from kiok.cli.context import CliContext, json_option, pass_cli
from kiok.cli.output import NONE, emit_json, emit_table, text
from kiok.cli.runs import parse_args


@click.group()
def connections() -> None:
    """Manage connections (credentials for tasks; values are never shown)."""


@connections.command("list")
@json_option
@pass_cli
def list_connections(cli: CliContext) -> None:
    """Table of CONNECTION, TYPE, PROPERTIES (names only), UPDATED, DESCRIPTION."""
    answer = cli.client().get("/api/v1/connections")
    if cli.as_json:
        emit_json(answer)
        return
    items = answer.get("connections", []) if isinstance(answer, dict) else []
    if not items:
        click.echo("no connections")
        return
    rows = [
        [
            text(c.get("connectionId")),
            text(c.get("type")),
            _names(c.get("properties")),
            text(c.get("updatedAt")),
            " ".join(text(c.get("description")).split()),
        ]
        for c in items
    ]
    emit_table(["CONNECTION", "TYPE", "PROPERTIES", "UPDATED", "DESCRIPTION"], rows)


@connections.command()
@click.argument("connection_id", metavar="ID")
@json_option
@pass_cli
def show(cli: CliContext, connection_id: str) -> None:
    """Show one connection (property values as ***)."""
    answer = cli.client().get(f"/api/v1/connections/{segment(connection_id)}")
    if cli.as_json:
        emit_json(answer)
    else:
        click.echo(render_connection(answer))


@connections.command("set")
@click.argument("connection_id", metavar="ID")
@click.option("--type", "kind", default="generic", show_default=True, help="A free-form type name.")
@click.option("--description", default="", help="What it is for.")
@click.option(
    "--property", "-p", "pairs", multiple=True, metavar="KEY=VALUE", help="A property (repeatable)."
)
@click.option(
    "--prompt",
    "prompted",
    multiple=True,
    metavar="KEY",
    help="A property whose value is asked for at a hidden prompt (repeatable).",
)
@json_option
@pass_cli
def set_connection(
    cli: CliContext,
    connection_id: str,
    kind: str,
    description: str,
    pairs: tuple[str, ...],
    prompted: tuple[str, ...],
) -> None:
    """Create connection ID, or replace it whole: properties not given are removed."""
    try:
        properties = parse_args(pairs)
    except click.BadParameter as e:
        raise click.BadParameter(e.message, param_hint="--property") from None
    for key in prompted:
        properties[key] = click.prompt(f"Value of {key}", hide_input=True)
    body = {
        "connectionId": connection_id,
        "type": kind,
        "description": description,
        "properties": properties,
    }
    answer = cli.client().post("/api/v1/connections", body)
    if cli.as_json:
        emit_json(answer)
    else:
        click.echo(f"set {connection_id} ({len(properties)} properties)")


@connections.command()
@click.argument("connection_id", metavar="ID")
@json_option
@pass_cli
def delete(cli: CliContext, connection_id: str) -> None:
    """Delete connection ID."""
    answer = cli.client().delete(f"/api/v1/connections/{segment(connection_id)}")
    if cli.as_json:
        emit_json(answer)
    else:
        click.echo(f"deleted {connection_id}")


def render_connection(doc: Any) -> str:
    """``name: value`` lines, then one line per property (values are ``***``)."""
    if not isinstance(doc, dict):
        return text(doc)
    header = [
        ("connection", text(doc.get("connectionId"))),
        ("type", text(doc.get("type"))),
        ("description", text(doc.get("description"))),
        ("created", text(doc.get("createdAt"))),
        ("updated", text(doc.get("updatedAt"))),
    ]
    lines = [f"{name + ':':<13}{value}" for name, value in header]
    props = doc.get("properties")
    if isinstance(props, dict) and props:
        lines += ["", "properties:", *(f"  {key}: {text(value)}" for key, value in props.items())]
    else:
        lines.append(f"{'properties:':<13}{NONE}")
    return "\n".join(lines)


def _names(props: Any) -> str:
    return ",".join(props) if isinstance(props, dict) and props else NONE
