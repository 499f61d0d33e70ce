"""What every client command receives: the global options, resolved once, and the seams.

``Runtime`` holds what tests replace (HTTP transport, sleep, clock, environment); pass one as
``obj`` to ``CliRunner.invoke`` and the group uses it instead of the real ones.
``CliContext.client()`` builds the one ``ApiClient`` of this invocation and closes it when the
command ends. ``json_option`` gives a command the global options after its name too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import urlsplit

import click
import httpx

from kiok.cli.client import ApiClient, Tokens
from kiok.cli.credentials import CredentialStore, SavedLogin, default_path
from kiok.errors import KiokError

DEFAULT_PORT = 8080


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    """The process's contact with the outside world, replaceable in tests."""

    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = _utcnow
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


def master_url(master: str) -> str:
    """``host:port``, ``host`` (port 8080) or an ``http(s)://`` URL, as a base URL without a
    trailing slash. Raises ``click.BadParameter`` for anything else."""
    text = master.strip()
    if "://" not in text:
        text = f"http://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise click.BadParameter(f"{master!r}: {e}", param_hint="--master") from e
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise click.BadParameter(f"{master!r} is not host:port or an http(s) URL", param_hint="--master")
    netloc = parts.netloc
    if port is None and "://" not in master:
        netloc = f"{netloc}:{DEFAULT_PORT}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def access_key(value: str) -> str:
    """``<accessKeyId>:<secretAccessKey>`` as given, or ``click.BadParameter``."""
    key_id, sep, secret = value.strip().partition(":")
    if not sep or not key_id or not secret:
        raise click.BadParameter("expected <accessKeyId>:<secretAccessKey>", param_hint="--access-key")
    return f"{key_id}:{secret}"


@dataclass
class CliContext:
    """The resolved global options. ``token`` is the one given by ``--token``/``KIOK_USER_TOKEN``,
    ``access_key`` the ``<id>:<secret>`` of ``--access-key``/``KIOK_ACCESS_KEY`` (at most one
    of them is set); without either the saved login for ``base_url`` is used."""

    base_url: str
    token: str | None
    as_json: bool
    timeout: float
    runtime: Runtime
    #: CA bundle that an https master's certificate is verified against (None: system CAs).
    ca_file: str | None = None
    access_key: str | None = None
    _client: ApiClient | None = None
    #: The credentials ("token", "access_key") given on the command line, not by the environment.
    _command_line: set[str] = field(default_factory=set)

    def use_credential(self, kind: str, value: str, *, command_line: bool) -> None:
        """Set ``kind`` ("token" or "access_key"). The command line beats the environment;
        two from the same place are a usage error."""
        other = "access_key" if kind == "token" else "token"
        if getattr(self, other) is not None:
            other_on_command_line = other in self._command_line
            if other_on_command_line and not command_line:
                return
            if other_on_command_line == command_line:
                raise click.UsageError(
                    "--token and --access-key both given; use one"
                    if command_line
                    else "KIOK_USER_TOKEN and KIOK_ACCESS_KEY are both set; unset one"
                )
            setattr(self, other, None)
        setattr(self, kind, value)
        if command_line:
            self._command_line.add(kind)

    @property
    def credentials(self) -> CredentialStore:
        return CredentialStore(default_path(self.runtime.environ))

    def client(self) -> ApiClient:
        """The API client for this invocation, authenticated as well as we can: ``--token`` or
        ``--access-key``, else the saved login for ``base_url`` (renewed on 401 and saved again)."""
        if self._client is None:
            if self.token:
                self._client = self._open(Tokens(self.token), None)
            elif self.access_key:
                self._client = self._open(Tokens(self.access_key, scheme="AccessKey"), None)
            else:
                saved = self.credentials.get(self.base_url)
                self._client = self._open(saved.tokens if saved else None, saved.user if saved else None)
        return self._client

    def anonymous_client(self) -> ApiClient:
        """A client that sends no credentials and never reads the saved ones (for ``login``)."""
        return self._open(None, None)

    def _open(self, tokens: Tokens | None, user: str | None) -> ApiClient:
        client = ApiClient(
            self.base_url,
            tokens=tokens,
            timeout=self.timeout,
            transport=self.runtime.transport,
            on_tokens=lambda t: self.save_tokens(t, user),
            ca_file=self.ca_file,
            sleep=self.runtime.sleep,
            on_retry=self._retrying,
        )
        return click.get_current_context().with_resource(client)

    def _retrying(self, error: KiokError, retry_for: float) -> None:
        if not self.as_json:  # stderr stays one JSON error document, if any
            click.echo(f"{error.message}; retrying for up to {retry_for:g}s", err=True)

    def save_tokens(self, tokens: Tokens, user: str | None) -> None:
        self.credentials.save(self.base_url, SavedLogin(user=user, tokens=tokens))


pass_cli = click.make_pass_decorator(CliContext)
"""Decorator handing a command the ``CliContext`` the ``kiok`` group built."""


def _late(
    apply: Callable[[CliContext, str], None],
) -> Callable[[click.Context, click.Parameter, object], None]:
    """A callback that applies a global option given after the command to the ``CliContext``
    the ``kiok`` group built (absent while completing a command line: nothing to do then)."""

    def callback(ctx: click.Context, _param: click.Parameter, value: object) -> None:
        cli = ctx.find_object(CliContext)
        if cli is not None and value is not None and value is not False and not ctx.resilient_parsing:
            apply(cli, str(value))

    return callback


def _set_master(cli: CliContext, value: str) -> None:
    cli.base_url = master_url(value)


def _set_ca(cli: CliContext, value: str) -> None:
    cli.ca_file = value


def _set_timeout(cli: CliContext, value: str) -> None:
    cli.timeout = float(value)


def _set_token(cli: CliContext, value: str) -> None:
    cli.use_credential("token", value, command_line=True)


def _set_access_key(cli: CliContext, value: str) -> None:
    cli.use_credential("access_key", access_key(value), command_line=True)


def _set_json(cli: CliContext, _value: str) -> None:
    cli.as_json = True


_LATE_OPTIONS = [
    click.option("--master", expose_value=False, hidden=True, callback=_late(_set_master)),
    click.option("--token", expose_value=False, hidden=True, callback=_late(_set_token)),
    click.option("--access-key", expose_value=False, hidden=True, callback=_late(_set_access_key)),
    click.option(
        "--ca",
        expose_value=False,
        hidden=True,
        type=click.Path(exists=True, dir_okay=False),
        callback=_late(_set_ca),
    ),
    click.option(
        "--timeout",
        expose_value=False,
        hidden=True,
        type=click.FloatRange(min=0, min_open=True),
        callback=_late(_set_timeout),
    ),
    click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=False,
        callback=_late(_set_json),
        help="Print the server's JSON answer, for scripts (same as `kiok --json ...`).",
    ),
]

F = TypeVar("F", bound=Callable[..., object])


def json_option(f: F) -> F:
    """Let a command take the global options (``--json``, and hidden from its help ``--master``,
    ``--token``, ``--access-key``, ``--ca``, ``--timeout``) after its name too:
    ``kiok dags list --json --master m1``. Given there, they win over those before it."""
    for option in reversed(_LATE_OPTIONS):
        f = option(f)
    return f
