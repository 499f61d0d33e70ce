"""``kiok config show``: the settings a server command started here would run with, each with
where its value came from (default, file, env, flag); secrets redacted. Reads no server."""

from __future__ import annotations

import json

import click

from kiok.cli.context import CliContext
from kiok.cli.output import table, text
from kiok.cli.settings import load_settings


@click.group("config")
def config() -> None:
    """Inspect kiok's settings (docs/configuration.md)."""


@config.command("show")
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="Config file (YAML of dotted keys)."
)
@click.option("--data-dir", help="kiok.base.data.dir, as `kiok standalone --data-dir`.")
@click.option("--port", type=int, help="kiok.master.admin.port, as `kiok standalone --port`.")
@click.pass_obj
def show(obj: CliContext, config_file: str | None, data_dir: str | None, port: int | None) -> None:
    """Print every setting with its value and where it came from."""
    flags: dict[str, tuple[str, object]] = {}
    if data_dir is not None:  # given is given: --data-dir "" is refused, not ignored
        flags["kiok.base.data.dir"] = ("--data-dir", data_dir)
    if port is not None:  # --port 0 is a value, and flags win over the environment
        flags["kiok.master.admin.port"] = ("--port", port)
    settings = load_settings(config_file, flags)
    for warning in settings.warnings:
        click.echo(f"warning: {warning}", err=True)
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
