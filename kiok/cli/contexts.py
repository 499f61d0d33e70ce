"""``kiok context list|use|remove``: the saved contexts ``kiok login`` creates.

A context names one cluster (its masters, the login, the CA); ``--master NAME`` or
``KIOK_MASTER=NAME`` picks one for a command, ``kiok context use`` for every command after.
Only the local credentials file is read or written here; no master is contacted.
"""

from __future__ import annotations

import click

from kiok.cli.client import CliError
from kiok.cli.context import CliContext, json_option, pass_cli
from kiok.cli.credentials import SavedContext
from kiok.cli.output import emit_json, table


@click.group("context")
def context() -> None:
    """Saved contexts: named clusters (masters, login, CA) that `kiok login` creates."""


def _view(c: SavedContext, current: str | None) -> dict[str, object]:
    """A context as ``--json`` shows it: never its tokens."""
    return {
        "name": c.name,
        "current": c.name == current,
        "masters": list(c.masters),
        "active": c.active,
        "user": c.user,
        "loggedIn": c.tokens is not None,
        "ca": c.ca,
    }


@context.command("list")
@json_option
@pass_cli
def list_contexts(cli: CliContext) -> None:
    """The saved contexts; `*` marks the current one."""
    store = cli.credentials
    current = store.current()
    contexts = store.contexts()
    if cli.as_json:
        emit_json({"current": current, "contexts": [_view(c, current) for c in contexts]})
        return
    if not contexts:
        click.echo("no contexts saved; `kiok login` saves one")
        return
    rows = [
        [
            "*" if c.name == current else "",
            c.name,
            ",".join(c.masters),
            (c.user or "-") if c.tokens else "(logged out)",
            c.ca or "-",
        ]
        for c in contexts
    ]
    click.echo(table(["", "NAME", "MASTERS", "USER", "CA"], rows))


@context.command("use")
@click.argument("name")
@json_option
@pass_cli
def use(cli: CliContext, name: str) -> None:
    """Make context NAME the one commands use without --master."""
    saved = cli.credentials.use(name)
    if cli.as_json:
        emit_json(_view(saved, saved.name))
    else:
        click.echo(f"using context {name} ({', '.join(saved.masters)})")


@context.command("remove")
@click.argument("name")
@json_option
@pass_cli
def remove(cli: CliContext, name: str) -> None:
    """Forget context NAME: its masters, login and CA."""
    if not cli.credentials.remove(name):
        raise CliError(f"no context named {name!r}; `kiok context list` shows the saved ones")
    if cli.as_json:
        emit_json({"removed": name})
    else:
        click.echo(f"removed context {name}")
