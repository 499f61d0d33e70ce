"""``kiok workers``: list the connected (or the admitted) workers, drain and undrain one,
revoke one.

Draining is served by the worker itself, on its status port (``POST /drain``, ``POST
/undrain``): the master API has no drain endpoint, and in a cluster it does not know a
worker's status address (``/api/v1/cluster`` shows the peer address of its connection). So
``drain`` and ``undrain`` take that address, not a worker id, and send the worker's status
token, not a login: by default read from ``<kiok.base.data.dir>/status-token`` as the worker
finds it (the same environment and ``--config``), so on the worker's host as kiok's user;
``--token-file`` names another copy. Revoking is the master's (``DELETE
/api/v1/admin/workers/{id}``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from kiok.cli.admin import show_admitted_workers
from kiok.cli.client import ApiClient, CliError, Tokens, segment
from kiok.cli.cluster import worker_table
from kiok.cli.context import CliContext, json_option, pass_cli
from kiok.cli.output import emit_json
from kiok.cli.settings import load_settings
from kiok.worker.status_token import read_status_token, status_token_path

STATUS_PORT = 19998


def status_url(address: str, master_url: str) -> str:
    """A worker's status port as a base URL: ``host`` (port 19998), ``host:port`` or an
    ``http(s)://`` URL; without a scheme, the master's (a TLS cluster serves both on https)."""
    value = address.strip()
    if "://" not in value:
        scheme = "https" if master_url.startswith("https://") else "http"
        value = f"{scheme}://{value}"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as e:
        raise click.BadParameter(f"{address!r}: {e}", param_hint="STATUS_ADDRESS") from e
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(
            f"{address!r} is not host[:port] or an http(s) URL", param_hint="STATUS_ADDRESS"
        )
    netloc = parts.netloc if port is not None else f"{parts.netloc}:{STATUS_PORT}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


@click.group()
def workers() -> None:
    """List, drain, undrain and revoke workers."""


@workers.command("list")
@click.option("--admitted", is_flag=True, help="The admitted workers (revoked ones too), not the connected.")
@json_option
@pass_cli
def list_workers(cli: CliContext, admitted: bool) -> None:
    """The connected workers: labels, slots busy and free, draining, last heartbeat."""
    if admitted:
        show_admitted_workers(cli, "WORKER")
        return
    answer = cli.client().get("/api/v1/cluster")
    if cli.as_json:
        emit_json({"workers": answer.get("workers", []) if isinstance(answer, dict) else []})
    else:
        click.echo(
            worker_table(answer.get("workers") if isinstance(answer, dict) else None, cli.runtime.now())
        )


_Command = TypeVar("_Command", bound=Callable[..., Any])


def _token_options(command: _Command) -> _Command:
    """``--token-file`` and ``--config``: where the worker's status token is read."""
    command = click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        help="The worker's config file, to find its data directory (YAML of dotted keys).",
    )(command)
    return click.option(
        "--token-file",
        type=click.Path(path_type=Path),
        help="The worker's status token [default: <kiok.base.data.dir>/status-token, the data "
        "directory the worker's settings (environment, --config) give].",
    )(command)


@workers.command()
@click.argument("address", metavar="STATUS_ADDRESS")
@_token_options
@json_option
@pass_cli
def drain(cli: CliContext, address: str, token_file: Path | None, config_file: str | None) -> None:
    """Stop giving runs to the worker whose status port is STATUS_ADDRESS (host[:port] or URL,
    port 19998 by default); the runs it drives carry on to their end. Sends the worker's
    status token (run on its host as kiok's user, or pass --token-file)."""
    _status_post(cli, address, "/drain", _status_token(token_file, config_file))


@workers.command()
@click.argument("address", metavar="STATUS_ADDRESS")
@_token_options
@json_option
@pass_cli
def undrain(cli: CliContext, address: str, token_file: Path | None, config_file: str | None) -> None:
    """Let the worker at STATUS_ADDRESS take runs again (with its status token, as drain)."""
    _status_post(cli, address, "/undrain", _status_token(token_file, config_file))


def _status_token(token_file: Path | None, config_file: str | None) -> str:
    """The status token in ``token_file``, or else in the data directory the worker's settings
    give; ``CliError`` in one line when it cannot be read."""
    if token_file is not None:
        path, hint = token_file, "check --token-file"
    else:
        path = status_token_path(load_settings(config_file, {}).data_dir)
        hint = (
            "run it on the worker's host as kiok's user with the worker's settings "
            "(KIOK_BASE_DATA_DIR, --config), or pass --token-file"
        )
    try:
        return read_status_token(path)
    except OSError as e:
        raise CliError(f"cannot read the worker's status token {path}: {e.strerror or e} ({hint})") from None
    except ValueError:
        raise CliError(f"cannot read the worker's status token: {path} is empty ({hint})") from None


def _status_post(cli: CliContext, address: str, path: str, token: str) -> None:
    url = status_url(address, cli.base_url)
    client = ApiClient(
        url,
        tokens=Tokens(token),
        timeout=cli.timeout,
        transport=cli.runtime.transport,
        ca_file=cli.ca_file,
        sleep=cli.runtime.sleep,
        retry_for=0,
        server="worker status port",
        unreachable_hint="the worker's kiok.worker.host:kiok.worker.status.port",
    )
    with client:
        answer = client.post(path)
    if cli.as_json:
        emit_json(answer)
    else:
        click.echo(describe_drain(url, answer))


def describe_drain(url: str, answer: Any) -> str:
    """``worker at URL is draining (2 runs still active)`` or ``... takes runs again``."""
    doc = answer if isinstance(answer, dict) else {}
    active = doc.get("activeRuns")
    runs = (
        f"{active} run{'' if active == 1 else 's'} active"
        if isinstance(active, int)
        else "active runs unknown"
    )
    if doc.get("draining"):
        return f"worker at {url} is draining ({runs}; they carry on to their end)"
    return f"worker at {url} takes runs again ({runs})"


@workers.command()
@click.argument("worker_id", metavar="WORKER")
@json_option
@pass_cli
def revoke(cli: CliContext, worker_id: str) -> None:
    """Revoke WORKER's credential and disconnect it at once (only a new join token admits it
    again)."""
    answer = cli.client().delete(f"/api/v1/admin/workers/{segment(worker_id)}")
    if cli.as_json:
        emit_json(answer)
    else:
        click.echo(f"revoked {worker_id}")
