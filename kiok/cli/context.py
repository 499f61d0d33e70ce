"""What every client command receives: the global options, resolved once, and the seams.

``Runtime`` holds what tests replace (HTTP transport, sleep, clock, environment); pass one as
``obj`` to ``CliRunner.invoke`` and the group uses it instead of the real ones.
``CliContext.client()`` builds the one ``ApiClient`` of this invocation and closes it when the
command ends; ``CliContext.target`` is what ``--master`` stands for (a saved context or master
URLs, see ``resolve_target``). ``json_option`` gives a command the global options after its name too.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import httpx

from kiok.cli.client import ApiClient, Tokens
from kiok.cli.credentials import CredentialStore, SavedContext, default_path
from kiok.cli.masters import DEFAULT_MASTER, contains, master_urls, try_order
from kiok.errors import KiokError


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    """The process's contact with the outside world, replaceable in tests."""

    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = _utcnow
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


def access_key(value: str) -> str:
    """``<accessKeyId>:<secretAccessKey>`` as given, or ``click.BadParameter``."""
    key_id, sep, secret = value.strip().partition(":")
    if not sep or not key_id or not secret:
        raise click.BadParameter("expected <accessKeyId>:<secretAccessKey>", param_hint="--access-key")
    return f"{key_id}:{secret}"


def ca_path(value: str) -> str:
    """``--ca``/``KIOK_TLS_CA``: an existing file, or ``click.BadParameter`` (checked only for
    the commands that talk to a master)."""
    if not os.path.isfile(value):
        problem = "is a directory" if os.path.isdir(value) else "does not exist"
        raise click.BadParameter(f"file {value!r} {problem}", param_hint="--ca")
    return value


@dataclass(frozen=True)
class Target:
    """The masters this invocation talks to, in the order to try them, and the saved context
    whose login (tokens, CA) it uses, if any. ``named`` is set when ``--master`` named the
    context (or it is the current one), rather than a context being found by a master URL."""

    masters: tuple[str, ...]
    context: SavedContext | None = None
    named: bool = False


def resolve_target(master: str | None, store: CredentialStore) -> Target:
    """What ``--master``/``KIOK_MASTER`` stands for: a saved context's name, else a list of
    master addresses (whose login is the context holding the first one, ``localhost`` matching
    ``127.0.0.1``). Without either: the current context, else ``localhost:8080``."""
    if master is None:
        current = store.current()
        saved = store.get(current) if current else None
        if saved is not None:
            return Target(try_order(saved.masters, saved.active), saved, named=True)
        master = DEFAULT_MASTER
    else:
        saved = store.get(master.strip())
        if saved is not None:
            return Target(try_order(saved.masters, saved.active), saved, named=True)
    urls = master_urls(master)
    return Target(urls, store.for_master(urls[0]))


@dataclass
class CliContext:
    """The resolved global options. ``master`` is ``--master``/``KIOK_MASTER`` as given (None:
    the current context); ``token`` is the one given by ``--token``/``KIOK_USER_TOKEN``,
    ``access_key`` the ``<id>:<secret>`` of ``--access-key``/``KIOK_ACCESS_KEY`` (at most one
    of them is set); without either the saved context's login is used."""

    master: str | None
    token: str | None
    as_json: bool
    timeout: float
    runtime: Runtime
    #: CA bundle given by --ca/KIOK_TLS_CA (None: the context's, else the system CAs).
    ca_option: str | None = None
    access_key: str | None = None
    _client: ApiClient | None = None
    _target: Target | None = None
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

    def set_master(self, value: str) -> None:
        self.master = value
        self._target = None

    @property
    def credentials(self) -> CredentialStore:
        return CredentialStore(default_path(self.runtime.environ))

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = resolve_target(self.master, self.credentials)
        return self._target

    @property
    def base_url(self) -> str:
        """The master tried first (after a failover: the one that answered)."""
        return self._client.base_url if self._client is not None else self.target.masters[0]

    @property
    def ca_file(self) -> str | None:
        """``--ca``/``KIOK_TLS_CA``, else the CA saved with the context."""
        context = self.target.context
        return self.ca_option or (context.ca if context else None)

    def client(self) -> ApiClient:
        """The API client for this invocation, authenticated as well as we can: ``--token`` or
        ``--access-key``, else the saved context's login (renewed on 401 and saved again)."""
        if self._client is None:
            if self.token:
                self._client = self._open(Tokens(self.token))
            elif self.access_key:
                self._client = self._open(Tokens(self.access_key, scheme="AccessKey"))
            else:
                saved = self.target.context
                self._client = self._open(saved.tokens if saved else None, saved)
        return self._client

    def anonymous_client(self) -> ApiClient:
        """A client that sends no credentials and never reads the saved ones (for ``login``)."""
        return self._open(None)

    def _open(self, tokens: Tokens | None, saved: SavedContext | None = None) -> ApiClient:
        target = self.target
        where = f"context {target.context.name!r}; " if target.named and target.context else ""
        client = ApiClient(
            target.masters[0],
            fallbacks=target.masters[1:],
            tokens=tokens,
            timeout=self.timeout,
            transport=self.runtime.transport,
            on_tokens=(lambda t: self.credentials.update(saved.name, tokens=t)) if saved else None,
            on_master=self._remember,
            ca_file=self.ca_file,
            sleep=self.runtime.sleep,
            on_retry=self._retrying,
            unreachable_hint=f"{where}check --master or KIOK_MASTER",
        )
        return click.get_current_context().with_resource(client)

    def _remember(self, url: str) -> None:
        """A master other than the first answered: try it first next time too."""
        saved = self.target.context
        if saved is not None and contains(saved.masters, url):
            self.credentials.update(saved.name, active=url)

    def _retrying(self, error: KiokError, retry_for: float) -> None:
        if not self.as_json:  # stderr stays one JSON error document, if any
            click.echo(f"{error.message}; retrying for up to {retry_for:g}s", err=True)


pass_cli = click.make_pass_decorator(CliContext)
"""Decorator handing a command the ``CliContext`` the ``kiok`` group built."""


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` (it passes every bound's comparison) and
    an infinity (``1e309``) where the range has no bound to catch it."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


#: A day: more is no answer to wait for, and a socket cannot wait for ever (``1e309``).
MAX_TIMEOUT_S = 86400.0
#: ``--timeout``, before or after the command: seconds to wait for each HTTP answer.
TIMEOUT_S = FiniteFloatRange(min=0, min_open=True, max=MAX_TIMEOUT_S)


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
    cli.set_master(value)


def _set_ca(cli: CliContext, value: str) -> None:
    cli.ca_option = value


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
        type=TIMEOUT_S,
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
