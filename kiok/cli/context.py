"""What every client command receives: the global options, resolved once, and the seams.

``Runtime`` holds what tests replace (HTTP transport, sleep, clock, environment); pass one as
``obj`` to ``CliRunner.invoke`` and the group uses it instead of the real ones.
``CliContext.client()`` builds the one ``ApiClient`` of this invocation and closes it when the
command ends.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import click
import httpx

from kiok.cli.client import ApiClient, Tokens
from kiok.cli.credentials import CredentialStore, SavedLogin, default_path

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


@dataclass
class CliContext:
    """The resolved global options. ``token`` is the one given by ``--token``/``KIOK_USER_TOKEN``;
    without it the saved login for ``base_url`` is used."""

    base_url: str
    token: str | None
    as_json: bool
    timeout: float
    runtime: Runtime
    #: CA bundle that an https master's certificate is verified against (None: system CAs).
    ca_file: str | None = None
    _client: ApiClient | None = None

    @property
    def credentials(self) -> CredentialStore:
        return CredentialStore(default_path(self.runtime.environ))

    def client(self) -> ApiClient:
        """The API client for this invocation, authenticated as well as we can: ``--token``
        first, else the saved login for ``base_url`` (renewed on 401 and saved again)."""
        if self._client is None:
            if self.token:
                self._client = self._open(Tokens(self.token), None)
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
        )
        return click.get_current_context().with_resource(client)

    def save_tokens(self, tokens: Tokens, user: str | None) -> None:
        self.credentials.save(self.base_url, SavedLogin(user=user, tokens=tokens))


pass_cli = click.make_pass_decorator(CliContext)
"""Decorator handing a command the ``CliContext`` the ``kiok`` group built."""


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    cli = ctx.find_object(CliContext)
    if value and cli is not None:
        cli.as_json = True


json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    expose_value=False,
    callback=_set_json,
    help="Print the server's JSON answer, for scripts (same as `kiok --json ...`).",
)
"""Decorator letting a command take ``--json`` after its name too (``kiok dags list --json``)."""
