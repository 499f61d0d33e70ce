"""Host addresses as the settings give them (``kiok.core.addresses``), and where they show:
the day-one re-probe of session 27 found ``0:0:0:0:0:0:0:0`` advertised as itself (an address
nobody reaches) and an IPv6 master advertising ``http://::1:8080`` (no client parses it)."""

from __future__ import annotations

import socket

from kiok.config import Settings
from kiok.core.addresses import every_address, in_url, reachable_host
from kiok.roots.common import status_url


def test_every_address_in_any_spelling() -> None:
    for host in ("", "0.0.0.0", "::", "0:0:0:0:0:0:0:0"):
        assert every_address(host), host
        assert reachable_host(host) == socket.gethostname()
    for host in ("127.0.0.1", "::1", "localhost", "my-host.internal"):
        assert not every_address(host) and reachable_host(host) == host


def test_an_ipv6_address_is_bracketed_before_its_port() -> None:
    assert in_url("::1") == "[::1]" and in_url("[::1]") == "[::1]" and in_url("localhost") == "localhost"
    assert status_url(Settings.load(env={"KIOK_WORKER_HOST": "::1"}), False) == "http://[::1]:19998"
    spelt_out = status_url(Settings.load(env={"KIOK_WORKER_HOST": "0:0:0:0:0:0:0:0"}), False)
    assert spelt_out == f"http://{socket.gethostname()}:19998"
