"""``kiok admin``: admit workers (one-time join tokens), list them, revoke one; maintenance mode.

``kiok admin join-token`` prints the token alone on stdout, so ``TOKEN=$(kiok admin join-token)``
works; its expiry goes to stderr.
"""

from __future__ import annotations

import json
import os
import socket

import click

from kiok.cli.backups import COMMANDS as backup_commands
from kiok.cli.client import CliError, segment
from kiok.cli.context import CliContext, json_option, pass_cli
from kiok.cli.output import emit_json, emit_table, text
from kiok.cli.settings import load_settings
from kiok.master.admin_socket import may_administer, peer_uid

MIN_TTL_S = 60
MAX_TTL_S = 7 * 24 * 3600


@click.group()
def admin() -> None:
    """Administer the cluster: admit, list and revoke workers; maintenance mode; backups."""


@admin.command("join-token")
@click.option("--role", type=click.Choice(["worker"]), default="worker", show_default=True)
@click.option(
    "--ttl",
    type=click.IntRange(MIN_TTL_S, MAX_TTL_S),
    default=3600,
    show_default=True,
    metavar="SECONDS",
    help="How long the token can be used.",
)
@json_option
@pass_cli
def join_token(cli: CliContext, role: str, ttl: int) -> None:
    """Create a one-time join token and print it.

    Start one worker with it (KIOK_WORKER_JOIN_TOKEN); on its first connect the worker
    exchanges it for a persistent credential.
    """
    answer = cli.client().post("/api/v1/admin/join-tokens", {"role": role, "ttlSeconds": ttl})
    token = answer.get("token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        raise CliError("the master's join-token answer carries no token")
    if cli.as_json:
        emit_json(answer)
        return
    click.echo(token)
    click.echo(f"one-time join token for one {role}; expires at {answer.get('expiresAt')}", err=True)


@admin.command()
@json_option
@pass_cli
def workers(cli: CliContext) -> None:
    """List admitted workers (revoked ones too)."""
    show_admitted_workers(cli, "ID")


def show_admitted_workers(cli: CliContext, id_header: str) -> None:
    """Every admitted worker, revoked ones too (``kiok admin workers``, ``kiok workers list
    --admitted``)."""
    answer = cli.client().get("/api/v1/admin/workers")
    if cli.as_json:
        emit_json(answer)
        return
    items = answer.get("workers", []) if isinstance(answer, dict) else []
    if not items:
        click.echo("no workers admitted")
        return
    rows = [
        [
            text(w.get("id")),
            text(w.get("admittedAt")),
            text(w.get("revokedAt") or True) if w.get("revoked") else "no",
        ]
        for w in items
    ]
    emit_table([id_header, "ADMITTED", "REVOKED"], rows)


@admin.command()
@click.argument("worker_id", metavar="WORKER")
@json_option
@pass_cli
def revoke(cli: CliContext, worker_id: str) -> None:
    """Revoke WORKER's credential and disconnect it at once. Only a new join token admits
    that id again."""
    answer = cli.client().delete(f"/api/v1/admin/workers/{segment(worker_id)}")
    if cli.as_json:
        emit_json(answer)
    else:
        click.echo(f"revoked {worker_id}")


@admin.group()
def kms() -> None:
    """The data keys that encrypt everything kiok stores."""


@kms.command("list")
@json_option
@pass_cli
def kms_list(cli: CliContext) -> None:
    """The data keys and their current versions."""
    answer = cli.client().get("/api/v1/admin/kms")
    if cli.as_json:
        emit_json(answer)
    else:
        rows = [[text(k.get("key")), text(k.get("version")), text(k.get("versions"))] for k in answer["keys"]]
        emit_table(["KEY", "VERSION", "VERSIONS"], rows)


@kms.command("rotate")
@click.argument("key", metavar="KEY")
@json_option
@pass_cli
def kms_rotate(cli: CliContext, key: str) -> None:
    """Make a new version of KEY current (old data stays readable)."""
    answer = cli.client().post("/api/v1/admin/kms/rotate", {"key": key})
    if cli.as_json:
        emit_json(answer)
    else:
        click.echo(f"{answer['key']} is now at version {answer['version']}")


@admin.command("reset-password")
@click.option("--user", default="admin", show_default=True, help="Whose password to reset.")
@click.option("--new-password", help="The new password; default: a generated one, printed once.")
@click.option(
    "--restore-admin",
    is_flag=True,
    help="Also give the user full access again (the 'full-access' policy, attached to the user "
    "alone; made again if deleted, copied if changed): when no administrator is left.",
)
@click.option(
    "--socket",
    "socket_path",
    envvar="KIOK_ADMIN_SOCKET",
    help="The master's admin socket [env: KIOK_ADMIN_SOCKET; default: the master's "
    "kiok.admin.socket.path, else <kiok.base.data.dir>/admin.sock].",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="The master's config file, to find its admin socket (YAML of dotted keys).",
)
@json_option
@pass_cli
def reset_password(
    cli: CliContext,
    user: str,
    new_password: str | None,
    restore_admin: bool,
    socket_path: str | None,
    config_file: str | None,
) -> None:
    """Reset a password through the running master's local admin socket (works when nobody
    can log in), with --restore-admin making the user an administrator again (works when no
    administrator is left). The user must change the password at the next login."""
    path = socket_path
    if not path:  # where the master puts it: the same settings (environment, config file)
        settings = load_settings(config_file, {})
        path = str(settings.admin_socket_path)
    request: dict[str, str | bool] = {"op": "reset-password", "user": user}
    if new_password is not None:
        request["newPassword"] = new_password
    if restore_admin:
        request["restoreAdmin"] = True
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(path)
            # The password goes only to a master of this user's or root's: in a directory
            # others may write, anyone could listen at the path (security re-probe, session 28).
            server = peer_uid(sock)
            if not may_administer(server, os.geteuid()):
                raise CliError(
                    f"the process listening at {path} runs as uid {server}, neither this user nor "
                    "root: no password was sent to it"
                )
            sock.sendall(json.dumps(request).encode() + b"\n")
            answer = json.loads(sock.makefile("rb").readline() or b"{}")
    except OSError as e:
        raise CliError(
            f"cannot reach the master's admin socket {path}: {e} (is the master running?)"
        ) from None
    if not answer.get("ok"):
        raise CliError(str(answer.get("error", "the master refused the reset")))
    if cli.as_json:  # {"user", "password"?, "denying"?}: the socket's answer
        emit_json({k: v for k, v in answer.items() if k != "ok"})
        return
    if answer.get("denying"):
        click.echo(
            f"note: these policies of {user} (or of its groups) deny some actions, and a Deny wins "
            f"over full access: {', '.join(answer['denying'])}",
            err=True,
        )
    if "password" in answer:
        click.echo(answer["password"])
        click.echo(f"password of {user} reset; it must be changed at the next login", err=True)
    else:
        click.echo(f"password of {user} reset; it must be changed at the next login")


@admin.command()
@click.argument("switch", metavar="on|off|status", type=click.Choice(["on", "off", "status"]))
@json_option
@pass_cli
def maintenance(cli: CliContext, switch: str) -> None:
    """Maintenance mode: while on, no run starts (manual triggers are refused, cron firings
    are skipped for good, pending runs wait); running runs finish. `status` shows it."""
    client = cli.client()
    if switch == "status":
        answer = client.get("/api/v1/admin/maintenance")
    else:
        answer = client.post("/api/v1/admin/maintenance", {"enabled": switch == "on"})
    if cli.as_json:
        emit_json(answer)
        return
    if answer.get("enabled"):
        click.echo(f"maintenance mode: on (since {answer.get('since')}, by {answer.get('by')})")
    elif answer.get("until"):
        click.echo(f"maintenance mode: off (last on {answer.get('since')} to {answer.get('until')})")
    else:
        click.echo("maintenance mode: off")


for _command in backup_commands:
    admin.add_command(_command)
