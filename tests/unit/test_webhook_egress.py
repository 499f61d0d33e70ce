"""``kiok.security.egress`` (which hosts a webhook may not reach) and the notifier's use of it:
every resolved address checked, and the request sent to the checked one, so a name that
resolves elsewhere the second time (DNS rebinding) is never looked up again."""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kiok.config import Settings
from kiok.dag.notify import WebhookTarget
from kiok.errors import InvalidInput
from kiok.master.notify import DeliveryRefused, Notifier, NotifySettings
from kiok.security.egress import (
    DEFAULT_BLOCKED,
    DEFAULT_NETWORKS,
    SETTING,
    blocking_network,
    literal_host_problem,
    parse_networks,
)
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader
from kiok.testing.process import free_port


def test_the_default_is_the_settings_default_and_leaves_private_ranges_open() -> None:
    assert Settings.load({})[SETTING] == DEFAULT_BLOCKED
    assert Settings.load({"KIOK_NOTIFY_WEBHOOK_BLOCKED_NETWORKS": ""})[SETTING] == ""
    assert parse_networks("") == ()
    for private in ("10.1.2.3", "172.16.0.1", "192.168.1.1", "fd00::1", "8.8.8.8"):
        assert blocking_network(private, DEFAULT_NETWORKS) is None


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("127.0.0.1", "127.0.0.0/8"),
        ("127.255.0.9", "127.0.0.0/8"),
        ("::1", "::1/128"),
        ("169.254.169.254", "169.254.0.0/16"),
        ("fe80::1%eth0", "fe80::/10"),
        ("0.0.0.0", "0.0.0.0/8"),
        ("::", "::/128"),
        ("::ffff:127.0.0.1", "127.0.0.0/8"),
        ("::ffff:169.254.169.254", "169.254.0.0/16"),
    ],
)
def test_default_blocked_addresses(address: str, network: str) -> None:
    assert blocking_network(address, DEFAULT_NETWORKS) == ipaddress.ip_network(network)


def test_a_wrong_entry_names_the_setting() -> None:
    with pytest.raises(InvalidInput, match=SETTING):
        parse_networks("127.0.0.0/8,localhost")


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://169.254.169.254/latest/meta-data/", True),
        ("https://[::ffff:127.0.0.1]:8443/", True),
        ("http://LOCALHOST./", True),
        ("http://a.localhost/", True),
        ("http://0x7f.1/", True),
        ("http://2130706433/", True),
        ("http://10.0.0.1/", False),
        ("https://hooks.example.com/kiok", False),
        ("http://${conn.alerts.host}/x", False),
        ("${conn.alerts.url}", False),
        ("http://[::1", False),  # does not parse: the send fails, retried like before
    ],
)
def test_a_literal_host_at_registration(url: str, refused: bool) -> None:
    problem = literal_host_problem(url, DEFAULT_NETWORKS)
    assert (problem is not None) == refused, problem
    if problem is not None:
        assert SETTING in problem


class _Receiver:
    def __init__(self) -> None:
        self.hosts: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.hosts.append(str(self.headers["Host"]))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture()
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def _notifier(blocked: str) -> Notifier:
    kv = MemoryKV(keys.SPACES)
    settings = NotifySettings(1, 1, 1, 5, 1, "http://kiok", blocked_networks=parse_networks(blocked))
    return Notifier(LocalCommandLog(kv), StateReader(kv), lambda: 1000, lambda run, text: None, settings)


@pytest.fixture()
def rebinding(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``rebind.test`` resolves to 127.0.0.1 the first time, to 127.0.0.3 every time after;
    other names as usual. The list holds each lookup of it."""
    lookups: list[str] = []
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        address = "127.0.0.1" if not lookups else "127.0.0.3"
        lookups.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return lookups


async def test_the_checked_address_is_the_one_connected_to(receiver: _Receiver, rebinding: list[str]) -> None:
    notifier = _notifier("127.0.0.3/32")
    target = WebhookTarget(f"http://rebind.test:{receiver.port}/hook")
    assert await notifier._webhook(target, {"event": "x"}, []) == " (204)"
    assert rebinding == ["127.0.0.1"]  # looked up once: checked, then connected to
    assert receiver.hosts == [f"rebind.test:{receiver.port}"]  # the name still in Host
    refused = f"rebind.test resolves to 127.0.0.3, in a blocked network (127.0.0.3/32, {SETTING})"
    with pytest.raises(DeliveryRefused, match=re.escape(refused)):
        await notifier._webhook(target, {"event": "x"}, [])
    assert len(receiver.hosts) == 1


async def test_one_blocked_address_among_several_refuses_the_name(
    receiver: _Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def two(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port))),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:169.254.169.254", int(port), 0, 0)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", two)
    with pytest.raises(DeliveryRefused, match=re.escape("(169.254.0.0/16, ")):
        await _notifier("169.254.0.0/16")._webhook(
            WebhookTarget(f"http://two.test:{receiver.port}/"), {"event": "x"}, []
        )
    assert receiver.hosts == []
