"""The ``kiok`` command: the root click group, its global options, and error reporting.

Client commands (login, dags, trigger, runs) talk to a master over HTTP. The server commands
(``standalone``, ``master``, ``worker``) come from ``kiok.cli.serve`` when it exists.
A ``KiokError`` or ``CliError`` from any command is printed as ``error: <message>`` on stderr
(with ``--json``: ``{"error": {"code", "message"}}``, the server's shape) with exit status 1;
usage errors keep click's exit status 2, as does an argument that is not UTF-8 text (``NotText``,
found where it would go into a URL). No traceback for any. Shell completion is click's
own: ``eval "$(_KIOK_COMPLETE=bash_source kiok)"``.
"""

from __future__ import annotations

from typing import Any

import click

from kiok.cli import admin, audit, auth, cluster, config, connections, contexts, dags, iam, runs, workers
from kiok.cli.client import CliError, NotText
from kiok.cli.context import TIMEOUT_S, CliContext, Runtime, access_key, ca_path
from kiok.cli.output import emit_error
from kiok.errors import KiokError

#: The commands that are not clients of a master: the global client options (``--ca``,
#: ``--access-key``, ``--token``) are neither checked nor used for them.
NOT_CLIENTS = frozenset({"standalone", "master", "worker", "config"})


class KiokGroup(click.Group):
    """A group that turns kiok's own errors into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NotText as e:
            raise click.UsageError(e.message) from None
        except (KiokError, CliError) as e:
            cli = ctx.find_object(CliContext)
            emit_error(e, as_json=cli is not None and cli.as_json)
            ctx.exit(1)


@click.group(cls=KiokGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kiok", prog_name="kiok", message="%(prog)s %(version)s")
@click.option(
    "--master",
    envvar="KIOK_MASTER",
    metavar="CONTEXT|HOST:PORT[,...]",
    help="A saved context (`kiok context list`), or the master(s) to talk to, tried in order"
    " [env: KIOK_MASTER; default: the current context, else localhost:8080].",
)
@click.option(
    "--token",
    envvar="KIOK_USER_TOKEN",
    metavar="JWT",
    help="Access token [env: KIOK_USER_TOKEN]; default: the one saved by `kiok login`.",
)
@click.option(
    "--access-key",
    "key",
    envvar="KIOK_ACCESS_KEY",
    metavar="ID:SECRET",
    help="Authenticate with an access key instead [env: KIOK_ACCESS_KEY].",
)
@click.option(
    "--ca",
    "ca_file",
    envvar="KIOK_TLS_CA",
    help="CA bundle to verify an https master against [env: KIOK_TLS_CA].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON answer, for scripts.")
@click.option(
    "--timeout",
    type=TIMEOUT_S,
    default=30.0,
    show_default=True,
    help="Seconds to wait for each HTTP answer.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    master: str | None,
    token: str | None,
    key: str | None,
    ca_file: str | None,
    as_json: bool,
    timeout: float,
) -> None:
    """kiok: a distributed DAG orchestrator.

    The global options may also follow the command: `kiok runs list --json --master m1`.
    """
    runtime = ctx.obj if isinstance(ctx.obj, Runtime) else Runtime()
    context = CliContext(
        master=master,
        token=None,
        as_json=as_json,
        timeout=timeout,
        runtime=runtime,
    )
    ctx.obj = context
    if ctx.invoked_subcommand in NOT_CLIENTS or ctx.resilient_parsing:
        # Servers and `kiok config` talk to no master: the client's variables
        # (KIOK_TLS_CA, KIOK_ACCESS_KEY, ...) may be set for other commands and are not theirs.
        return
    context.ca_option = ca_path(ca_file) if ca_file is not None else None
    given = [("token", token), ("access_key", access_key(key) if key else None)]
    on_command_line = {
        kind: ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        for kind, name in (("token", "token"), ("access_key", "key"))
    }
    for kind, value in sorted(given, key=lambda kv: not on_command_line[kv[0]]):
        if value:
            context.use_credential(kind, value, command_line=on_command_line[kind])


cli.add_command(auth.login)
cli.add_command(auth.change_password)
cli.add_command(auth.logout)
cli.add_command(contexts.context)
cli.add_command(dags.dags)
cli.add_command(runs.trigger)
cli.add_command(runs.runs)
cli.add_command(admin.admin)
cli.add_command(cluster.cluster)
cli.add_command(workers.workers)
cli.add_command(connections.connections)
cli.add_command(iam.iam)
cli.add_command(audit.audit)
cli.add_command(config.config)


def _add_server_commands(group: click.Group) -> None:
    """Register ``standalone``/``master``/``worker`` if ``kiok.cli.serve`` is there yet."""
    try:
        from kiok.cli.serve import register_server_commands
    except ImportError as e:
        if e.name != "kiok.cli.serve":
            raise  # serve exists but is broken: say so rather than hide the commands
        return
    register_server_commands(group)


_add_server_commands(cli)


def main() -> None:
    """Entry point of the ``kiok`` console script."""
    cli(prog_name="kiok")
