"""A DAG author's webhooks cannot reach the master's own host (loopback: its admin API, a
co-located worker's status port), link-local addresses (cloud metadata) or the unspecified
address: ``kiok.notify.webhook.blocked.networks``, against real ``kiok standalone`` processes.
A literal blocked host is refused at registration; a name or a connection's URL at send time,
logged as refused (not retried) with nothing reaching the listener."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from kiok.testing.process import Standalone, free_port

pytestmark = pytest.mark.slow

SETTING = "kiok.notify.webhook.blocked.networks"


class Listener:
    """An HTTP server on ``host`` that records each request's path and headers and answers 200."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self.hits: list[tuple[str, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.hits.append((self.path, dict(self.headers)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture()
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    """Default settings: loopback, link-local and unspecified blocked."""
    env = {"KIOK_NOTIFY_CHECK_INTERVAL_MS": "200", "KIOK_NOTIFY_MAX_ATTEMPTS": "3"}
    n = Standalone(tmp_path_factory.mktemp("egress") / "kiok", env)
    n.start()
    yield n
    n.stop()


def _connection(node: Standalone, conn_id: str, url: str) -> None:
    r = node.api(
        "POST",
        "/api/v1/connections",
        json={"connectionId": conn_id, "type": "generic", "properties": {"url": url}},
    )
    assert r.status_code == 201, r.text


def _one_webhook(dag_id: str, url: str) -> str:
    return (
        f'dag: {{id: {dag_id}, notify: {{on_failure: [{{webhook: {{url: "{url}"}}}}]}}}}\n'
        'tasks: [{id: a, script: "true"}]\n'
    )


def _notes(node: Standalone, run_id: str, count: int) -> str:
    """The run log once it holds ``count`` final notification outcomes."""
    return str(
        node.wait_for(
            lambda: (
                (log := node.log(run_id, "__run__"))
                and log.count("refused:") + log.count("delivered") + log.count("failed after") >= count
                and log
            ),
            30,
            f"{count} notification outcomes",
        )
    )


def test_webhooks_to_the_masters_host_are_refused_and_never_sent(
    node: Standalone, listener: Listener
) -> None:
    """The reported attack: webhooks (from connections, so registration cannot see the host)
    to the worker's status port (``/drain``), the master's admin API, a local listener by
    address, by a name resolving to it, and as an IPv4-mapped IPv6 address."""
    targets = {
        "drain": f"http://127.0.0.1:{node.status_port}/drain",
        "admin": f"http://127.0.0.1:{node.admin_port}/api/v1/dags",
        "by_address": f"http://127.0.0.1:{listener.port}/hook",
        "by_name": f"http://localhost:{listener.port}/hook",
        "mapped": f"http://[::ffff:127.0.0.1]:{listener.port}/hook",
        "unspecified": f"http://0.0.0.0:{listener.port}/hook",
    }
    for conn_id, url in targets.items():
        _connection(node, f"egress_{conn_id}", url)
    hooks = "\n".join(f'      - webhook: {{url: "${{conn.egress_{c}.url}}"}}' for c in targets)
    node.register(
        f"dag:\n  id: ssrf\n  notify:\n    on_success:\n{hooks}\ntasks:\n  - {{id: t, script: 'true'}}\n"
    )
    run_id = node.trigger("ssrf")
    assert node.wait_run(run_id)["state"] == "SUCCESS"
    log = _notes(node, run_id, len(targets))
    print(log)
    assert log.count("refused: ") == len(targets), log
    assert log.count(SETTING) == len(targets), log
    assert "localhost resolves to " in log, log
    assert "attempt 1 failed" not in log and "delivered" not in log and "Traceback" not in log, log
    assert listener.hits == []
    status = httpx.get(node.status_url + "/status", headers=node.status_auth, timeout=5).json()
    assert status["draining"] is False


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8080/api/v1/dags",
        "http://localhost:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::1]:8080/",
        "http://127.1/",
        "http://0.0.0.0/",
    ],
)
def test_a_literal_blocked_host_is_refused_at_registration(node: Standalone, url: str) -> None:
    doc = _one_webhook("meta", url)
    r = node.api("POST", "/api/v1/dags", content=doc, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 400, r.text
    assert SETTING in r.text and "dag.notify.on_failure[0].webhook.url" in r.text, r.text
    assert node.api("GET", "/api/v1/dags/meta").status_code == 404


def test_an_operators_list_replaces_the_default(tmp_path: Any, listener: Listener) -> None:
    """With loopback left out of the setting, a webhook to a name resolving to 127.0.0.1 is
    delivered (to the address checked, the name in ``Host``); the listed 127.0.0.2/32 is refused,
    at registration as a literal, at send time through a connection."""
    other = Listener("127.0.0.2")
    env = {
        "KIOK_NOTIFY_CHECK_INTERVAL_MS": "200",
        "KIOK_NOTIFY_MAX_ATTEMPTS": "3",
        "KIOK_NOTIFY_WEBHOOK_BLOCKED_NETWORKS": "10.0.0.0/8, 127.0.0.2/32",
    }
    n = Standalone(tmp_path / "kiok", env)
    n.start()
    try:
        doc = _one_webhook("listed", f"http://127.0.0.2:{other.port}/")
        r = n.api("POST", "/api/v1/dags", content=doc, headers={"Content-Type": "application/yaml"})
        assert r.status_code == 400 and SETTING in r.text, r.text
        _connection(n, "listed", f"http://127.0.0.2:{other.port}/hook")
        n.register(
            f"""
dag:
  id: allowed
  notify:
    on_success:
      - webhook: {{url: "http://localhost:{listener.port}/hook"}}
      - webhook: {{url: "${{conn.listed.url}}"}}
tasks:
  - {{id: t, script: "true"}}
"""
        )
        run_id = n.trigger("allowed")
        assert n.wait_run(run_id)["state"] == "SUCCESS"
        log = _notes(n, run_id, 2)
        assert "webhook delivered (200)" in log, log
        assert f"127.0.0.2 is in a blocked network (127.0.0.2/32, {SETTING})" in log, log
        ((path, headers),) = listener.hits
        assert path == "/hook" and headers["Host"] == f"localhost:{listener.port}"
        assert other.hits == []
    finally:
        n.stop()
        other.stop()


def test_behind_an_egress_proxy_webhooks_go_through_it_after_the_same_check(
    tmp_path: Any, listener: Listener
) -> None:
    """Where the master's environment names a proxy (``HTTP_PROXY``), a webhook goes through
    it, as it did before the egress check, which still refuses blocked hosts first."""
    env = {
        "KIOK_NOTIFY_CHECK_INTERVAL_MS": "200",
        "KIOK_NOTIFY_MAX_ATTEMPTS": "1",
        "HTTP_PROXY": f"http://127.0.0.1:{listener.port}",
        "http_proxy": f"http://127.0.0.1:{listener.port}",
        "NO_PROXY": "",
        "no_proxy": "",
    }
    n = Standalone(tmp_path / "kiok", env)
    n.start()
    try:
        _connection(n, "local", "http://127.0.0.1:9/hook")
        n.register(
            """
dag:
  id: proxied
  notify:
    on_success:
      - webhook: {url: "http://192.0.2.10/hook"}
      - webhook: {url: "${conn.local.url}"}
tasks:
  - {id: t, script: "true"}
"""
        )
        run_id = n.trigger("proxied")
        assert n.wait_run(run_id)["state"] == "SUCCESS"
        log = _notes(n, run_id, 2)
        assert "webhook delivered (200)" in log and "127.0.0.1 is in a blocked network" in log, log
        ((path, headers),) = listener.hits  # the proxy got the one allowed webhook, whole
        assert path == "http://192.0.2.10/hook" and headers["Host"] == "192.0.2.10", (path, headers)
    finally:
        n.stop()
