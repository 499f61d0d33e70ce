"""``kiok config show``: the settings a server command started here would run with, each with
where its value came from (default, file, env, flag); secrets redacted. Reads no server.

It refuses what that start would refuse on the settings alone (``kiok.roots.preflight``: a
setting no start takes, two of its ports on one number), with the same one line and exit
status 1, without binding a port or touching the data directory."""

from __future__ import annotations

import json
from typing import NoReturn, cast

import click

from kiok.cli.context import CliContext, json_option, pass_cli
from kiok.cli.output import emit_error, table, text
from kiok.cli.settings import load_settings
from kiok.errors import InvalidInput, KiokError


@click.group("config")
def config() -> None:
    """Inspect kiok's settings (docs/configuration.md)."""


@config.command("show")
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="Config file (YAML of dotted keys)."
)
@click.option("--data-dir", help="kiok.base.data.dir, as `kiok standalone --data-dir`.")
@click.option("--port", type=int, help="kiok.master.admin.port, as `kiok standalone --port`.")
@click.option(
    "--for",
    "server",
    type=click.Choice(["standalone", "master", "worker"]),
    default="standalone",
    show_default=True,
    help="Check the settings as this server command does at start.",
)
@json_option
@pass_cli
def show(
    obj: CliContext, config_file: str | None, data_dir: str | None, port: int | None, server: str
) -> None:
    """Print every setting with its value and where it came from; refuse, as a start would,
    settings it would not start with."""
    flags: dict[str, tuple[str, object]] = {}
    if data_dir is not None:  # given is given: --data-dir "" is refused, not ignored
        flags["kiok.base.data.dir"] = ("--data-dir", data_dir)
    if port is not None:  # --port 0 is a value, and flags win over the environment
        flags["kiok.master.admin.port"] = ("--port", port)
    try:
        settings = load_settings(config_file, flags)
    except click.ClickException as e:
        _refuse(obj, e.message)
    for warning in settings.warnings:  # said before a refusal, as a start logs them
        click.echo(f"warning: {warning}", err=True)
    from kiok.roots import preflight  # the servers' side, imported only here (it is not light)

    try:
        preflight.check(settings, cast("preflight.Command", server))
    except KiokError as e:
        _refuse(obj, e.message)
    explained = settings.explain()
    if obj.as_json:
        rows = [{"key": e.key, "value": e.value, "source": e.source, "from": e.origin} for e in explained]
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(
        table(
            ["KEY", "VALUE", "SOURCE"],
            [[e.key, text(e.value), f"{e.source} {e.origin}".strip()] for e in explained],
        )
    )


def _refuse(obj: CliContext, message: str) -> NoReturn:
    """A setting a start would refuse: its one line, as a start says it (``Error: …``), or with
    ``--json`` one JSON error document, as every command's (found by the operability re-probe
    of session 28: it stayed text)."""
    if obj.as_json:
        emit_error(InvalidInput(message), as_json=True)
        raise click.exceptions.Exit(1)
    raise click.ClickException(message)
