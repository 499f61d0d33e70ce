"""Connections that never finish a request cannot pile up on an HTTP port: anyone who reaches
the port could otherwise hold thousands of them (no login needed) until the process ran out
of file descriptors, and with them its store's files and its workers' connections."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from kiok.roots.http_protocol import HttpLimits, limited_protocol
from kiok.security.tls import TlsFiles
from kiok.testing.process import Standalone
from kiok.testing.tls import TestCA

MAX_CONNECTIONS = 8
PER_ADDRESS = 4


@pytest.fixture(scope="module")
def k(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    env = {
        "KIOK_HTTP_REQUEST_TIMEOUT_MS": "1000",
        "KIOK_HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "KIOK_HTTP_MAX_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS),
    }
    node = Standalone(Path(tmp_path_factory.mktemp("limits")) / "kiok", env).start()
    yield node
    node.stop()


def _connect(k: Standalone, source: str = "127.0.0.1") -> socket.socket:
    host, port = k.url.split("://", 1)[1].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=15, source_address=(source, 0))


def _answer(s: socket.socket) -> bytes:
    """What the server sends until it closes the connection."""
    out = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := s.recv(4096):
            out += chunk
    return out


PROBE = b"GET /healthz HTTP/1.1\r\nHost: kiok\r\n\r\n"


def _response(s: socket.socket) -> bytes:
    """The status line of one whole response (b"" when the connection was closed)."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            return b""
        head += chunk
    head, _, body = head.partition(b"\r\n\r\n")
    length = int(
        next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:]
    )
    while len(body) < length:
        body += s.recv(4096)
    return head.split(b"\r\n", 1)[0]


def test_a_request_that_never_arrives_whole_is_closed(k: Standalone) -> None:
    idle, headers, body = _connect(k), _connect(k), _connect(k)
    headers.sendall(b"GET /api/v1/dags HTTP/1.1\r\nHost: kiok\r\n")
    body.sendall(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: kiok\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    assert _answer(idle) == b""
    assert _answer(headers).startswith(b"HTTP/1.1 408 ")
    assert _answer(body).startswith(b"HTTP/1.1 408 ")
    # A connection kept alive gets the same time again after each answer, not less.
    s = _connect(k)
    for _ in range(2):
        s.sendall(PROBE)
        assert _response(s) == b"HTTP/1.1 200 OK"
    assert _answer(s) == b""
    for c in (idle, headers, body, s):
        c.close()


def test_connections_past_the_limits_are_closed_at_once(k: Standalone) -> None:
    """At most PER_ADDRESS from one address, MAX_CONNECTIONS in all: one more is closed before
    anything is read from it; those open stay served."""
    held: list[socket.socket] = []

    def answers(source: str, n: int) -> list[bytes]:
        out = []
        for _ in range(n):
            s = _connect(k, source)
            held.append(s)  # kept open (alive after its answer) while the next ones come
            try:
                s.sendall(PROBE)
                out.append(_response(s))
            except (ConnectionResetError, BrokenPipeError):
                out.append(b"")
        return out

    ok = b"HTTP/1.1 200 OK"
    try:
        assert answers("127.0.0.1", PER_ADDRESS + 2) == [ok] * PER_ADDRESS + [b""] * 2
        assert answers("127.0.0.2", PER_ADDRESS) == [ok] * PER_ADDRESS  # another address
        assert answers("127.0.0.3", 2) == [b""] * 2  # all MAX_CONNECTIONS taken
        for s in held[:PER_ADDRESS]:
            s.sendall(PROBE)
            assert _response(s) == ok
    finally:
        for s in held:
            s.close()
    assert k.api("GET", "/api/v1/dags").status_code == 200  # the port serves again


def test_the_rest_of_a_body_sent_after_its_answer_gets_no_more_time(k: Standalone) -> None:
    """An answer that comes before the whole body (the probe reads none) leaves the
    connection awaiting the rest, then the next request: both within the time, not for ever."""
    s = _connect(k)
    s.sendall(PROBE.replace(b"\r\n\r\n", b"\r\nContent-Length: 1\r\n\r\n"))
    assert _response(s) == b"HTTP/1.1 200 OK"
    s.sendall(b"x")  # the end of that request: nothing of the next one comes
    s.settimeout(5)  # the limit is 1 s
    try:
        assert _answer(s) == b""
    finally:
        s.close()


@contextlib.asynccontextmanager
async def _in_process(app: Any, protocol: type[Any]) -> AsyncIterator[tuple[str, int]]:
    """uvicorn serving ``app`` with ``protocol`` in this process, on a free port: its address."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, http=protocol, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield sock.getsockname()
    finally:
        server.should_exit = True
        await serving


async def test_a_pipelined_request_being_answered_is_not_cut() -> None:
    """Two requests sent at once: the second, in whole, is answered after the first however
    long it takes (the time counts only while a request is awaited)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await asyncio.sleep(0.6)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async with _in_process(app, limited_protocol(HttpLimits(0.2, 8))) as address:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"GET /fast HTTP/1.1\r\nHost: k\r\n\r\nGET /slow HTTP/1.1\r\nHost: k\r\n\r\n")
        answers = await asyncio.wait_for(reader.read(), 5)  # until closed, by the time limit
        assert answers.count(b"HTTP/1.1 200 OK") == 2, answers
        assert b"408" not in answers
        writer.close()


# With TLS, asyncio runs a connection's protocol only once its handshake is done (and gives
# that 60 s): connections that never finish one must count, and be timed, all the same.
TLS_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def tls_k(tmp_path_factory: pytest.TempPathFactory, ca: TestCA) -> Iterator[Standalone]:
    env = {
        "KIOK_HTTP_REQUEST_TIMEOUT_MS": str(int(TLS_TIMEOUT_S * 1000)),
        "KIOK_HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "KIOK_HTTP_MAX_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS),
        **ca.env(ca.issue("limits")),
    }
    node = Standalone(Path(tmp_path_factory.mktemp("tls-limits")) / "kiok", env).start()
    yield node
    node.stop()


def _healthz(k: Standalone, source: str) -> int:
    verify = ssl.create_default_context(cafile=k.env["KIOK_TLS_CA"])
    transport = httpx.HTTPTransport(verify=verify, local_address=source)
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get(k.url + "/healthz").status_code


def _open(s: socket.socket) -> bool:
    """The server has not closed ``s`` (nothing came either)."""
    timeout = s.gettimeout()
    s.settimeout(0)  # a socket with a timeout would wait for something to read
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        s.settimeout(timeout)


def test_tls_connections_count_from_before_their_handshake(tls_k: Standalone) -> None:
    """Connections that send no ClientHello take their address's share: one more is closed
    at once (before those, which are closed only at the deadline); other addresses are
    served meanwhile, and the address again once they are gone."""
    silent = [_connect(tls_k) for _ in range(PER_ADDRESS)]
    try:
        over = _connect(tls_k)
        with over:
            assert _answer(over) == b""  # within the socket's 15 s: the deadline is 2 s
            assert all(_open(s) for s in silent)  # so it was closed by the limit, not by time
        assert _healthz(tls_k, "127.0.0.2") == 200
        with pytest.raises(httpx.TransportError):
            _healthz(tls_k, "127.0.0.1")
    finally:
        for s in silent:
            s.close()
    tls_k.wait_for(lambda: _healthz(tls_k, "127.0.0.1") == 200, 10, "the address served again")


def test_a_tls_handshake_that_never_ends_is_closed_at_the_deadline(tls_k: Standalone) -> None:
    """Nothing sent, or a ClientHello begun and left: closed after the request deadline
    (asyncio alone would wait 60 s)."""
    start = time.monotonic()
    idle, partial = _connect(tls_k), _connect(tls_k)
    partial.sendall(b"\x16\x03\x01\x02\x00\x01")  # a record header, one byte of ClientHello
    try:
        assert _answer(idle) == b""  # the socket waits 15 s at most
        assert _answer(partial) == b""
        assert time.monotonic() - start >= TLS_TIMEOUT_S
    finally:
        idle.close()
        partial.close()
    assert _healthz(tls_k, "127.0.0.1") == 200


async def _tls_request(
    address: tuple[str, int], ca: TestCA
) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    """A request sent with the end of the handshake, and its answer; the connection is left
    open, without the client's close_notify (the server awaits it)."""
    reader, writer = await asyncio.open_connection(*address)
    client = ssl.create_default_context(cafile=str(ca.cert))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            writer.write(outgoing.read())
            incoming.write(await asyncio.wait_for(reader.read(65536), 5))
    tls.write(b"GET / HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n")
    writer.write(outgoing.read())  # the client's Finished and the request, in one write
    answer = b""
    while not answer.endswith(b"\r\n\r\nok"):
        chunk = await asyncio.wait_for(reader.read(65536), 5)
        assert chunk, answer
        incoming.write(chunk)
        with contextlib.suppress(ssl.SSLWantReadError):
            while data := tls.read(65536):
                answer += data
    return answer, reader, writer


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_a_request_sent_with_the_end_of_the_handshake_is_served_over_tls(ca: TestCA) -> None:
    """The request can arrive in the same read as the handshake's last message (before the
    protocol has its TLS transport): it is answered, over TLS, and the app sees https."""
    schemes: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        schemes.append(scope["scheme"])
        await _ok(scope, receive, send)

    leaf = ca.issue("inproc")
    context = TlsFiles(str(leaf.cert), str(leaf.key), "").server_context(require_client_cert=False)
    async with _in_process(app, limited_protocol(HttpLimits(5, 8), context)) as address:
        answer, _, writer = await _tls_request(address, ca)
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer
        assert schemes == ["https"]
        writer.close()


async def test_a_client_that_never_says_goodbye_over_tls_is_closed_at_the_deadline(ca: TestCA) -> None:
    """After its answer, a TLS connection waits for the client's close_notify, counted
    against the connection limits all the while: for the request deadline, not asyncio's
    30 s (which let a client hold its address's share with connections it never closes)."""
    leaf = ca.issue("inproc")
    context = TlsFiles(str(leaf.cert), str(leaf.key), "").server_context(require_client_cert=False)
    async with _in_process(_ok, limited_protocol(HttpLimits(1, 8), context)) as address:
        answer, reader, writer = await _tls_request(address, ca)
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer
        start = time.monotonic()
        with contextlib.suppress(ConnectionResetError):
            while await asyncio.wait_for(reader.read(65536), 10):  # the server's close_notify
                pass
        assert time.monotonic() - start < 5
        writer.close()
