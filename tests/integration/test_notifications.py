"""DAG notifications against a real ``kiok standalone``: a webhook to a local HTTP receiver and
mail to a local SMTP server (aiosmtpd), on failure, success and SLA miss; retries while the
receiver is down; a bounded number of attempts. Nothing is mocked."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from kiok.testing.process import Standalone, free_port

pytestmark = pytest.mark.slow


class Receiver:
    """A tiny threaded HTTP server that records every POST; ``status`` is what it answers."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[dict[str, Any]] = []
        self.status = 200
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.received.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
                )
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def for_run(self, run_id: str, event: str | None = None) -> list[dict[str, Any]]:
        return [
            r["body"]
            for r in list(self.received)
            if r["body"]["runId"] == run_id and (event is None or r["body"]["event"] == event)
        ]


class Mailbox:
    def __init__(self) -> None:
        self.mails: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        self.mails.append((str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return "250 OK"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    env = {
        "KIOK_NOTIFY_RETRY_INITIAL_MS": "300",
        "KIOK_NOTIFY_RETRY_MAX_MS": "600",
        "KIOK_NOTIFY_MAX_ATTEMPTS": "4",
        "KIOK_NOTIFY_CHECK_INTERVAL_MS": "200",
        "KIOK_NOTIFY_TIMEOUT_MS": "3000",
        "KIOK_NOTIFY_LINK_BASE_URL": "https://kiok.example",
        # The receivers listen on 127.0.0.1: loopback allowed, link-local still blocked.
        "KIOK_NOTIFY_WEBHOOK_BLOCKED_NETWORKS": "169.254.0.0/16,fe80::/10",
    }
    n = Standalone(tmp_path_factory.mktemp("notify") / "kiok", env)
    n.start()
    yield n
    n.stop()


def _connection(node: Standalone, conn_id: str, type_: str, props: dict[str, str]) -> Any:
    return node.api(
        "POST", "/api/v1/connections", json={"connectionId": conn_id, "type": type_, "properties": props}
    )


def _run_log_has(node: Standalone, run_id: str, text: str, timeout_s: float = 30) -> str:
    return str(
        node.wait_for(lambda: (log := node.log(run_id, "__run__")) and text in log and log, timeout_s, text)
    )


def test_failure_sends_webhook_and_email(
    node: Standalone, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    box, smtp_port = mailbox
    r = _connection(node, "alerts", "generic", {"url": receiver.url, "token": "s3cr3t"})
    assert r.status_code == 201, r.text
    r = _connection(
        node, "smtp-main", "smtp", {"host": "127.0.0.1", "port": str(smtp_port), "from": "kiok@example.com"}
    )
    assert r.status_code == 201, r.text
    node.register(
        """
dag:
  id: notify_fail
  notify:
    on_failure:
      - webhook: {url: "${conn.alerts.url}", headers: {X-Token: "${conn.alerts.token}"}}
      - email: {connection: smtp-main, to: [ops@example.com, dev@example.com]}
    on_success:
      - webhook: {url: "${conn.alerts.url}"}
tasks:
  - {id: boom, script: "echo going down; exit 3"}
"""
    )
    run_id = node.trigger("notify_fail")
    assert node.wait_run(run_id)["state"] == "FAILED"
    log = _run_log_has(node, run_id, "notification on_failure → email")
    log = _run_log_has(node, run_id, "notification on_failure → webhook delivered (200)")
    (hook,) = receiver.for_run(run_id)
    assert hook["event"] == "on_failure" and hook["state"] == "FAILED" and hook["dagId"] == "notify_fail"
    assert "boom" in hook["reason"] and "exit code 3" in hook["reason"]
    assert hook["url"] == f"https://kiok.example/runs/{run_id}"
    assert hook["endedAt"] and hook["startedAt"]
    (req,) = [x for x in receiver.received if x["body"]["runId"] == run_id]
    assert req["headers"]["X-Token"] == "s3cr3t"
    node.wait_for(lambda: any(run_id in m[2].decode() for m in box.mails), 30, "the mail")
    (mail,) = [m for m in box.mails if run_id in m[2].decode()]
    assert mail[0] == "kiok@example.com" and sorted(mail[1]) == ["dev@example.com", "ops@example.com"]
    msg = message_from_bytes(mail[2])
    assert msg["Subject"] == f"[kiok] notify_fail: run {run_id} FAILED"
    assert "boom" in str(msg.get_payload())
    _run_log_has(node, run_id, "email to ops@example.com, dev@example.com delivered")
    assert "on_success" not in log


def test_success_notifies_on_success_only(node: Standalone, receiver: Receiver) -> None:
    node.register(
        f"""
dag:
  id: notify_ok
  notify:
    on_success: [{{webhook: {{url: "{receiver.url}"}}}}]
    on_failure: [{{webhook: {{url: "{receiver.url}"}}}}]
tasks:
  - {{id: fine, script: "true"}}
"""
    )
    run_id = node.trigger("notify_ok")
    assert node.wait_run(run_id)["state"] == "SUCCESS"
    _run_log_has(node, run_id, "notification on_success → webhook delivered (200)")
    (hook,) = receiver.for_run(run_id)
    assert hook["event"] == "on_success" and hook["state"] == "SUCCESS"


def test_sla_miss_is_sent_once_while_the_run_goes_on(
    node: Standalone, receiver: Receiver, task_tmp_path: Path
) -> None:
    # The task runs until the test has seen the webhook (a fixed sleep could end first on a
    # slow machine: the webhook would then say SUCCESS).
    marker = task_tmp_path / "seen"
    node.register(
        f"""
dag:
  id: notify_sla
  sla: 1s
  notify:
    on_sla_miss: [{{webhook: {{url: "{receiver.url}"}}}}]
tasks:
  - {{id: slow, script: "for i in $(seq 1 600); do test -e {marker} && exit 0; sleep 0.1; done; exit 1"}}
"""
    )
    run_id = node.trigger("notify_sla")
    node.wait_for(lambda: receiver.for_run(run_id, "on_sla_miss"), 30, "the sla-miss webhook")
    assert node.run(run_id)["state"] == "RUNNING"  # told while it still runs
    marker.touch()
    assert node.wait_run(run_id)["state"] == "SUCCESS"
    _run_log_has(node, run_id, "notification on_sla_miss → webhook delivered (200)")
    (hook,) = receiver.for_run(run_id)
    assert hook["state"] == "RUNNING" and "sla of 1s" in hook["reason"]


def test_retried_until_the_receiver_is_up(node: Standalone) -> None:
    late = Receiver()  # not listening yet: connection refused
    node.register(
        f"""
dag:
  id: notify_retry
  notify:
    on_failure: [{{webhook: {{url: "{late.url}"}}}}]
tasks:
  - {{id: boom, script: "exit 1"}}
"""
    )
    run_id = node.trigger("notify_retry")
    assert node.wait_run(run_id)["state"] == "FAILED"
    _run_log_has(node, run_id, "notification on_failure → webhook attempt 1 failed")
    late.start()
    try:
        _run_log_has(node, run_id, "notification on_failure → webhook delivered (200)")
        assert len(late.for_run(run_id)) == 1
    finally:
        late.stop()


def test_gives_up_after_the_last_attempt(node: Standalone) -> None:
    broken = Receiver().start()
    broken.status = 500
    try:
        node.register(
            f"""
dag:
  id: notify_broken
  notify:
    on_failure: [{{webhook: {{url: "{broken.url}"}}}}]
tasks:
  - {{id: boom, script: "exit 1"}}
"""
        )
        run_id = node.trigger("notify_broken")
        assert node.wait_run(run_id)["state"] == "FAILED"
        _run_log_has(node, run_id, "notification on_failure → webhook failed after 4 attempts: HTTP 500")
        assert len(broken.for_run(run_id)) == 4  # bounded: no flood after giving up
        node.wait_for(lambda: True, 1, "nothing")
        assert len(broken.for_run(run_id)) == 4
    finally:
        broken.stop()


@pytest.mark.parametrize(
    ("notify", "field", "words"),
    [
        ("{on_failure: [{slack: {}}]}", "dag.notify.on_failure[0]", "webhook"),
        ("{on_fail: []}", "dag.notify.on_fail", "on_failure"),
        ("{on_failure: [{webhook: {url: ftp://x}}]}", "dag.notify.on_failure[0].webhook.url", "http://"),
        (
            "{on_failure: [{email: {connection: m, to: [nobody]}}]}",
            "dag.notify.on_failure[0].email.to[0]",
            "email",
        ),
        ("{on_sla_miss: [{webhook: {url: 'http://x'}}]}", "dag.notify.on_sla_miss", "dag.sla"),
        (
            "{on_failure: [{webhook: {url: 'http://x/${params.p}'}}]}",
            "dag.notify.on_failure[0].webhook.url",
            "${conn.*}",
        ),
    ],
)
def test_a_bad_notify_block_is_refused_at_registration(
    node: Standalone, notify: str, field: str, words: str
) -> None:
    doc = f"dag: {{id: bad_notify, params: {{p: 1}}, notify: {notify}}}\ntasks: [{{id: a, script: 'true'}}]\n"
    r = node.api("POST", "/api/v1/dags", content=doc, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 400, r.text
    assert field in r.text and words in r.text


def test_an_smtp_connection_needs_a_host(node: Standalone) -> None:
    r = _connection(node, "smtp-bad", "smtp", {"port": "25", "from": "a@b.c"})
    assert r.status_code == 400 and "host" in r.text
