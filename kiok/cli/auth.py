"""``kiok login``, ``kiok change-password`` and ``kiok logout``: the saved session of a context.

``kiok login`` saves a named context (masters, tokens, CA) through ``kiok.cli.credentials``;
other commands pick it up through ``CliContext.client()``. Passwords are prompted for
(hidden) when not given as options.
"""

from __future__ import annotations

import os
from typing import Any

import click

from kiok.cli.client import CliError, Tokens
from kiok.cli.context import CliContext, json_option, pass_cli
from kiok.cli.credentials import SavedContext
from kiok.cli.masters import contains, default_context_name
from kiok.cli.output import emit_json

CHANGE_HINT = "run `kiok change-password` to set a new password"


def tokens_from(answer: Any, what: str) -> Tokens:
    """The ``accessToken``/``refreshToken`` pair of a login-like answer."""
    access = answer.get("accessToken") if isinstance(answer, dict) else None
    if not isinstance(access, str) or not access:
        raise CliError(f"the master's {what} answer carries no accessToken")
    refresh = answer.get("refreshToken")
    return Tokens(access, refresh if isinstance(refresh, str) and refresh else None)


def _login_context(cli: CliContext, name: str | None, tokens: Tokens, user: str | None, answered: str) -> str:
    """Save ``tokens`` as context ``name`` (default: the context ``--master`` names or holds,
    else the first master's host) with the masters, the CA and the master that answered;
    make it the current context. Returns the context's name."""
    target = cli.target
    previous = target.context
    if previous is not None and name not in (None, previous.name):
        previous = None
    if previous is not None and not all(contains(previous.masters, m) for m in target.masters):
        previous = None  # --master lists masters the context does not: the list replaces it
    if name is None:
        name = previous.name if previous else default_context_name(target.masters[0])
    existing = cli.credentials.get(name)
    ca = os.path.abspath(cli.ca_option) if cli.ca_option else (existing.ca if existing else None)
    context = SavedContext(
        name=name,
        masters=previous.masters if previous else target.masters,
        user=user,
        tokens=tokens,
        ca=ca,
        active=answered,
    )
    cli.credentials.save(context, make_current=True)
    return name


@click.command()
@click.option("--user", "-u", default="admin", show_default=True, help="User name.")
@click.option("--password", prompt=True, hide_input=True, help="Password (prompted for when omitted).")
@click.option(
    "--context",
    "name",
    metavar="NAME",
    help="Save the login as this context (default: the context --master names, else the master's host).",
)
@json_option
@pass_cli
def login(cli: CliContext, user: str, password: str, name: str | None) -> None:
    """Log in and save the session as a context (masters, tokens, CA) that later commands use.

    `kiok --master m1:8080,m2:8080,m3:8080 login --context prod` saves three masters: a command
    that cannot reach one tries the next. The context becomes the current one.
    """
    credentials = {"user": user, "password": password}
    client = cli.anonymous_client()
    answer = client.post("/api/v1/auth/login", credentials, auth=False)
    name = _login_context(cli, name, tokens_from(answer, "login"), user, client.base_url)
    must_change = bool(answer.get("requirePasswordChange"))
    if cli.as_json:
        emit_json(answer)
        if must_change:
            click.echo(f"password change required: {CHANGE_HINT}", err=True)
        return
    click.echo(f"logged in to {client.base_url} as {user} (context {name})")
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
    saved = None if cli.token or cli.access_key else cli.target.context
    has_tokens = isinstance(answer, dict) and isinstance(answer.get("accessToken"), str)
    if has_tokens:
        tokens = tokens_from(answer, "change-password")
        if saved is not None:
            cli.credentials.update(saved.name, tokens=tokens)
        else:
            _login_context(cli, None, tokens, None, client.base_url)
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
    """Forget the saved session's tokens (they expire on the server); the context's masters
    and CA stay for the next `kiok login` (`kiok context remove` forgets them too)."""
    saved = cli.target.context
    if saved is None or saved.tokens is None:
        click.echo(f"not logged in to {cli.base_url}")
        return
    cli.credentials.update(saved.name, tokens=None, user=None)
    click.echo(f"logged out of {saved.name} ({', '.join(saved.masters)})")
