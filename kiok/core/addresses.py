"""Host addresses as the settings give them: which bind every address, and how one is
written in a URL or a ``host:port`` pair. One place for both, so the port-clash check, the
worker's status URL and the master's advertised addresses agree (the day-one re-probe of
session 27: ``0:0:0:0:0:0:0:0`` was "every address" in one of them and a literal in the
others, and an IPv6 master advertised ``http://::1:8080``, which no client can parse)."""

from __future__ import annotations

import ipaddress
import socket

#: How the settings usually say "every address".
_EVERY_ADDRESS = frozenset({"", "0.0.0.0", "::"})


def every_address(host: str) -> bool:
    """Whether binding ``host`` binds every address of the machine."""
    if host in _EVERY_ADDRESS:
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def reachable_host(host: str) -> str:
    """Where others reach a process bound on ``host``: the machine's name for every address."""
    return socket.gethostname() if every_address(host) else host


def in_url(host: str) -> str:
    """``host`` as written before ``:<port>`` (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


__all__ = ["every_address", "in_url", "reachable_host"]
