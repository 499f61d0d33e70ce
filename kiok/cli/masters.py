"""Master addresses as the CLI accepts them, and the pure decisions about them.

``--master``/``KIOK_MASTER`` is a context name or a comma-separated list of ``host:port``,
``host`` or ``http(s)://`` URLs. This module parses such a list into base URLs, says when two
URLs are the same master (``localhost``, ``127.0.0.1`` and ``::1`` are one host) and derives
a context's default name from its first master. No I/O here: ``kiok.cli.context`` uses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

import click

from kiok.core.addresses import in_url

DEFAULT_PORT = 8080
DEFAULT_MASTER = f"localhost:{DEFAULT_PORT}"
#: Host names that all mean this machine's loopback: one master, one saved context.
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


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


def master_urls(value: str) -> tuple[str, ...]:
    """A comma-separated list of masters as base URLs, in order, duplicates (by
    ``same_master``) dropped. Raises ``click.BadParameter`` for an empty list or a bad entry."""
    urls: list[str] = []
    for part in value.split(","):
        if part.strip():
            url = master_url(part)
            if not any(same_master(url, seen) for seen in urls):
                urls.append(url)
    if not urls:
        raise click.BadParameter(f"{value!r} names no master", param_hint="--master")
    return tuple(urls)


def canonical(url: str) -> str:
    """The form two base URLs of one master share: scheme, loopback host spelled
    ``localhost``, explicit port, no trailing slash."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    host = "localhost" if host in _LOOPBACK else in_url(host)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{host}:{port}{parts.path.rstrip('/')}"


def same_master(a: str, b: str) -> bool:
    """Whether base URLs ``a`` and ``b`` reach the same master (``localhost`` is ``127.0.0.1``)."""
    return canonical(a) == canonical(b)


def contains(masters: Iterable[str], url: str) -> bool:
    return any(same_master(m, url) for m in masters)


def default_context_name(url: str) -> str:
    """A context's name when ``kiok login`` is not given one: the first master's host
    (``localhost`` for any loopback address), with ``:port`` unless the port is 8080."""
    parts = urlsplit(canonical(url))
    host = parts.hostname or "master"
    name = in_url(host)
    return name if parts.port == DEFAULT_PORT else f"{name}:{parts.port}"


def try_order(masters: Sequence[str], active: str | None) -> tuple[str, ...]:
    """The order to try ``masters`` in: the one that answered last time first, then the rest
    in their saved order."""
    first = [m for m in masters if active is not None and same_master(m, active)][:1]
    return tuple(first + [m for m in masters if m not in first])
