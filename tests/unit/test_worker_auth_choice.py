"""What a worker authenticates with, hello after hello: its saved credential; once a master
refuses that, its join token (at once); once the token gets nowhere either, the credential
again. Fresh masters restoring a backup (disaster recovery) refuse both until the restore is
done, and know the credential again after it: a worker that kept offering only the spent
token would stay locked out until restarted."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from kiok.protocol.messages import Refusal
from kiok.protocol.to_worker import Refused
from kiok.worker.master_client import MasterClient
from kiok.worker.outbox import Outbox
from tests.master_clients import StubWorker, master_client


class _Worker:
    abandoned: list[str]

    def __init__(self) -> None:
        self.abandoned = []

    def abandon_all(self, reason: str) -> None:
        self.abandoned.append(reason)

    def report_all(self) -> None:
        pass


def _client(tmp_path: Path) -> MasterClient:
    credential = tmp_path / "credential"
    credential.write_text("w1.secret\n")
    client = MasterClient(
        [("127.0.0.1", 1)],
        "w1",
        credential_file=credential,
        join_token="join-token",
        outbox=Outbox(tmp_path / "outbox"),
        heartbeat_interval_s=1,
        connect_timeout_s=1,
        io_timeout_s=1,
        max_frame_bytes=1 << 20,
    )
    client._worker = _Worker()  # type: ignore[assignment]
    return client


def _hello(client: MasterClient, answer: str | None) -> tuple[str | None, str | None]:
    """The hello's (credential, join token), then the master's refusal ``answer`` (if any)."""
    sent = client._auth()
    if answer is not None:
        client._refused(Refused(answer, f"refused: {answer}"), "m1")
    return sent


@pytest.mark.parametrize("token_answer", [Refusal.UNAUTHENTICATED, Refusal.RATE_LIMITED])
def test_the_credential_comes_back_once_the_token_got_nowhere(tmp_path: Path, token_answer: str) -> None:
    client = _client(tmp_path)
    assert _hello(client, Refusal.UNAUTHENTICATED) == ("w1.secret", None)  # before the restore
    assert client._retry_now  # the token follows at once
    assert _hello(client, token_answer) == (None, "join-token")
    assert _hello(client, None) == ("w1.secret", None)  # after the back-off: known again


def test_a_master_that_does_not_lead_changes_nothing(tmp_path: Path) -> None:
    client = _client(tmp_path)
    assert _hello(client, Refusal.UNAUTHENTICATED) == ("w1.secret", None)
    assert _hello(client, Refusal.NOT_LEADER) == (None, "join-token")
    assert _hello(client, None) == (None, "join-token")  # the leader has not answered the token yet


def test_a_refused_credential_followed_by_the_token_is_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A revoked worker re-admitted with a new join token: the credential's refusal is one
    WARNING saying the token follows (no ERROR before the token is even tried); an ERROR only
    once the token is refused too."""
    client = _client(tmp_path)
    caplog.set_level(logging.INFO, logger="kiok.worker.master_client")
    client._auth()
    client._refused(Refused(Refusal.UNAUTHENTICATED, "worker w1 was revoked"), "m1:1")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            "the master refused the saved credential (worker w1 was revoked); trying the join token",
        )
    ]
    assert client._retry_now and not client.state.startswith("refused")
    caplog.clear()
    assert client._auth() == (None, "join-token")
    client._refused(Refused(Refusal.UNAUTHENTICATED, "join token already used by another worker"), "m1:1")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.ERROR,
            "m1:1 refused this worker: worker w1 was revoked; and the join token: "
            "join token already used by another worker; trying again in 15s",
        )
    ]
    assert client.state.startswith("refused")


async def test_a_master_closing_a_plain_hello_hints_at_tls(tmp_path: Path) -> None:
    """What a TLS master does with a worker that speaks plain TCP: the error names kiok.tls.ca."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = master_client(tmp_path, [("127.0.0.1", port)])
    client.attach(StubWorker())  # type: ignore[arg-type]
    try:
        with pytest.raises(
            ConnectionError, match=r"during the hello \(.*if the master serves TLS, set kiok\.tls\.ca"
        ):
            await client._session("127.0.0.1", port)
    finally:
        server.close()
        await server.wait_closed()
