"""Settings for the commands that start kiok (and ``kiok config show``): the one place the
CLI turns the process environment, a config file and flags into ``Settings``.

The CLI's own ``KIOK_`` variables (``--master``'s ``KIOK_MASTER`` and the like) are found by
walking the command tree, so a new option with an ``envvar`` is never reported as unknown."""

from __future__ import annotations

import os
from collections.abc import Mapping

import click

from kiok.config import Settings
from kiok.errors import KiokError


def cli_variables(command: click.Command) -> set[str]:
    """Every environment variable an option of ``command`` or its subcommands reads."""
    names: set[str] = set()
    for param in command.params:
        envvar = getattr(param, "envvar", None)
        if isinstance(envvar, str):
            names.add(envvar)
        elif envvar:
            names.update(envvar)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            names |= cli_variables(sub)
    return names


def load_settings(config: str | None, flags: Mapping[str, tuple[str, object]]) -> Settings:
    """``Settings`` from the environment, ``config`` and ``flags`` ({key: (flag, value)});
    a bad value or unknown key is a ``ClickException`` (one line, exit status 1)."""
    root = click.get_current_context().find_root().command
    try:
        return Settings.load(
            env=os.environ,
            config_file=config,
            overrides={key: value for key, (_, value) in flags.items()},
            override_names={key: flag for key, (flag, _) in flags.items()},
            known_env=cli_variables(root),
        )
    except KiokError as e:
        raise click.ClickException(e.message) from None
