"""``kiok login``, ``kiok change-password`` and ``kiok logout``: the saved session for a master.

Tokens are kept by ``kiok.cli.credentials``; other commands pick them up through
``CliContext.client()``. Passwords are prompted for (hidden) when not given as options.
"""

from __future__ import annotations

from typing import Any

import click

from kiok.cli.client import CliError, Tokens
from kiok.cli.context import CliContext, json_option, pass_cli
from kiok.cli.output import emit_json

CHANGE_HINT = "run `kiok change-password` to set a new password"


def tokens_from(answer: Any, what: str) -> Tokens:
    """The ``accessToken``/``refreshToken`` pair of a login-like answer."""
    access = answer.get("accessToken") if isinstance(answer, dict) else None
    if not isinstance(access, str) or not access:
        raise CliError(f"the master's {what} answer carries no accessToken")
    refresh = answer.get("refreshToken")
    return Tokens(access, refresh if isinstance(refresh, str) and refresh else None)


@click.command()
@click.option("--user", "-u", default="admin", show_default=True, help="User name.")
@click.option("--password", prompt=True, hide_input=True, help="Password (prompted for when omitted).")
@json_option
@pass_cli
def login(cli: CliContext, user: str, password: str) -> None:
    """Log in and save the session for later commands."""
    credentials = {"user": user, "password": password}
    answer = cli.anonymous_client().post("/api/v1/auth/login", credentials, auth=False)
    cli.save_tokens(tokens_from(answer, "login"), user)
    must_change = bool(answer.get("requirePasswordChange"))
    if cli.as_json:
        emit_json(answer)
        if must_change:
            click.echo(f"password change required: {CHANGE_HINT}", err=True)
        return
    click.echo(f"logged in to {cli.base_url} as {user}")
    if must_change:
        click.echo(f"password change required: {CHANGE_HINT}")


@click.command("change-password")
@click.option("--old", "old_password", prompt="Current password", hide_input=True, help="Current password.")
@click.option(
    "--new",
    "new_password",
    prompt="New password",
    hide_input=True,
    confirmation_prompt=True,
    help="New password (prompted for twice when omitted).",
)
@json_option
@pass_cli
def change_password(cli: CliContext, old_password: str, new_password: str) -> None:
    """Change your password (and save the new tokens)."""
    client = cli.client()
    answer = client.post(
        "/api/v1/auth/change-password", {"oldPassword": old_password, "newPassword": new_password}
    )
    saved = None if cli.token else cli.credentials.get(cli.base_url)
    has_tokens = isinstance(answer, dict) and isinstance(answer.get("accessToken"), str)
    if has_tokens:
        cli.save_tokens(tokens_from(answer, "change-password"), saved.user if saved else None)
    if cli.as_json:
        emit_json(answer)
    elif has_tokens:
        click.echo("password changed")
    else:
        click.echo("password changed; run `kiok login` to log in again")


@click.command()
@json_option
@pass_cli
def logout(cli: CliContext) -> None:
    """Forget the saved session (its tokens expire on the server)."""
    removed = cli.credentials.remove(cli.base_url)
    click.echo(f"logged out of {cli.base_url}" if removed else f"not logged in to {cli.base_url}")
