"""A client that closes its connection before its request body arrived whole is the client's
doing: no traceback in the log (it was two, ~130 lines, on ``POST /api/v1/dags``), and the
request counts as a 4xx (499, client closed) in the HTTP metrics, not a 5xx — on every route
that reads a body, whether the endpoint reads it itself or FastAPI does."""

from __future__ import annotations

import re
import socket
import time

from kiok.testing.process import Standalone


def _cut_short(k: Standalone, head: bytes) -> None:
    """Send ``head`` and a few bytes of a 1000-byte body, then close the connection."""
    with socket.create_connection(("127.0.0.1", k.admin_port), timeout=10) as c:
        c.sendall(head + b"Content-Length: 1000\r\n\r\nabc")
        time.sleep(0.2)


def _series(k: Standalone, method: str, route: str) -> dict[str, float]:
    """Request counts of ``method route`` by status class."""
    text = k.api("GET", "/metrics").text
    out: dict[str, float] = {}
    pattern = re.compile(r"^kiok_http_request_duration_seconds_count\{(.*)\} (\S+)$")
    for line in text.splitlines():
        if m := pattern.match(line):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            if labels["method"] == method and labels["route"] == route:
                out[labels["status"]] = float(m.group(2))
    return out


def test_a_client_gone_mid_body_is_a_quiet_4xx_on_every_route(kiok: Standalone) -> None:
    auth = f"Authorization: Bearer {kiok.token}\r\n".encode()
    before = kiok.read_log()
    dags = b"POST /api/v1/dags HTTP/1.1\r\nHost: k\r\n" + auth
    cut_short = [
        dags,  # the endpoint reads the body itself: a DAG without a content type (JSON or YAML)
        dags + b"Content-Type: application/yaml\r\n",
        # FastAPI reads a declared JSON body.
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: k\r\nContent-Type: application/json\r\n",
    ]
    for head in cut_short:
        _cut_short(kiok, head)
    time.sleep(0.5)
    log = kiok.read_log()[len(before) :]
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
    assert "Exception in ASGI application" not in log, log[-3000:]
    assert " ERROR " not in log and " WARNING " not in log, log[-3000:]
    assert _series(kiok, "POST", "/api/v1/dags") == {"4xx": 2}
    login = _series(kiok, "POST", "/api/v1/auth/login")  # one 2xx: the test's own login
    assert login.get("4xx") == 1 and "5xx" not in login, login
