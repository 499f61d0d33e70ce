"""Mail over TLS through a real SMTP server (aiosmtpd): STARTTLS on submission and SMTPS.
The conversation is made without connecting in smtplib's constructor (so that its deadline
covers connecting too), and smtplib then had no server name to verify: every STARTTLS or
SMTPS mail failed with "check_hostname requires server_hostname"."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from kiok.core.notify import SmtpConnection
from kiok.master.notify import _send_mail
from kiok.testing.process import free_port
from kiok.testing.tls import Leaf, TestCA


class Mailbox:
    def __init__(self) -> None:
        self.mails: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        self.mails.append(content)
        return "250 OK"


@pytest.fixture
def ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestCA, Leaf]]:
    authority = TestCA(tmp_path / "ca")
    monkeypatch.setenv("SSL_CERT_FILE", str(authority.cert))  # what the default context trusts
    yield authority, authority.issue("smtp")


def _server_context(leaf: Leaf) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(leaf.cert, leaf.key)
    return context


def _mail() -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "kiok@example.com", "ops@example.com", "[kiok] d: run r FAILED"
    msg.set_content("failed")
    return msg


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_mail_goes_out_over_tls_verified_against_the_host_name(mode: str, ca: tuple[TestCA, Leaf]) -> None:
    _, leaf = ca
    box = Mailbox()
    port = free_port()
    options: dict[str, Any] = (
        {"tls_context": _server_context(leaf), "require_starttls": True}
        if mode == "starttls"
        else {"ssl_context": _server_context(leaf)}
    )
    controller = Controller(box, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        smtp = SmtpConnection.from_properties(
            {"host": "localhost", "port": str(port), mode: "true", "from": "kiok@example.com"}
        )
        _send_mail(smtp, _mail(), 10.0)
    finally:
        controller.stop()
    assert len(box.mails) == 1 and b"run r FAILED" in box.mails[0]
