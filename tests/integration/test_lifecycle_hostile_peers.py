"""The data-lifecycle edges (S3 archival and backups, restore, notifications,
connections) against hostile or broken peers: an S3 server that trickles bytes or never
answers must not hold a call forever, and so on. Real servers on 127.0.0.1 throughout."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.config import Settings
from kiok.store.objects import ObjectStoreUnavailable, s3_store_from_settings
from kiok.testing.process import Standalone
from tests.s3_fixture import ACCESS_KEY, REGION, SECRET_KEY

#: What a test allows a call bounded by a 1 s deadline before it calls the bound broken (the
#: per-read timeout of kiok's S3 client is 30 s, so a working deadline ends far sooner).
BOUND_S = 20.0


class RawServer:
    """A TCP server on 127.0.0.1 that hands each connection to ``serve`` on its own thread:
    the hostile peers below differ only in what they send. ``stop`` ends them all."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port: int = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve_one, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve_one(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self.serve(conn)

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def stop(self, join_s: float = 10) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        for thread in self._threads:
            thread.join(join_s)


def read_head(conn: socket.socket) -> bytes:
    """An HTTP request's head (up to the blank line); empty if the client hung up first."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        head += chunk
    return head


class TricklingS3(RawServer):
    """An "S3 server" that accepts every request and answers it one byte at a time, a byte
    every 0.2 s, forever: each read gets data well within any per-read timeout, so only a
    whole-request deadline ends the call.

    ``mode``: ``headers`` trickles the status line and headers; ``body`` sends complete
    headers (200, a 64 MiB Content-Length) and trickles the body."""

    def __init__(self, mode: str = "headers") -> None:
        self.mode = mode
        self.requests = 0
        super().__init__()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        head = read_head(conn)
        if not head:
            return
        self.requests += 1
        if b"expect: 100-continue" in head.lower():
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self.mode == "body":
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: 67108864\r\n\r\n"
            )
            drip = b"x"
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nx-amz-request-id: ")
            drip = b"a"
        while not self.stopping.wait(0.2):  # the hostile server's pace, not a sync
            conn.sendall(drip)


@pytest.fixture
def trickling() -> Iterator[Callable[[str], TricklingS3]]:
    servers: list[TricklingS3] = []

    def make(mode: str = "headers") -> TricklingS3:
        server = TricklingS3(mode)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def _bounded(call: Callable[[], Any], bound_s: float = BOUND_S) -> tuple[BaseException | None, float]:
    """Run ``call`` in a thread; the exception it ended with and how long it took. A call still
    running after ``bound_s`` fails the test (the thread is a daemon: the trickling server's
    teardown releases it)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as err:  # the test inspects it
            outcome.append(err)

    began = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound_s)
    took = time.monotonic() - began
    assert outcome, f"the S3 call was still running after {bound_s} s: no whole-request deadline"
    return outcome[0], took


def _store_on(endpoint: str, timeout_ms: int = 1000) -> Any:
    settings = Settings.load(
        env={},
        overrides={
            "kiok.joblog.s3.endpoint": endpoint,
            "kiok.joblog.s3.region": REGION,
            "kiok.joblog.s3.bucket": "trickled",
            "kiok.joblog.s3.access.key": ACCESS_KEY,
            "kiok.joblog.s3.secret.key": SECRET_KEY,
            "kiok.s3.request.timeout.ms": timeout_ms,
        },
    )
    store = s3_store_from_settings(settings, "kiok.joblog.s3")
    assert store is not None
    return store


@pytest.mark.parametrize("mode", ["headers", "body"])
def test_s3_calls_to_a_trickling_server_end_at_the_request_deadline(
    trickling: Callable[[str], TricklingS3], mode: str
) -> None:
    """Every kind of S3 call kiok makes (put, multipart part, ranged and whole get, head,
    listing, delete) ends at ``kiok.s3.request.timeout.ms`` with ObjectStoreUnavailable
    naming the deadline, against a server whose bytes keep coming too slowly to ever finish."""
    server = trickling(mode)
    store = _store_on(server.endpoint)
    calls: dict[str, Callable[[], Any]] = {
        "put": lambda: store.put("run-a/t/0000", b"log bytes"),
        "get": lambda: store.get("run-a/t/0000"),
        "get_range": lambda: store.get_range("run-a/t/0000", 0, 1 << 20),
        "exists": lambda: store.exists("run-a/t/0000"),
        "list": lambda: store.list("run-a/"),
        "delete": lambda: store.delete("run-a/t/0000"),
    }
    if mode == "body":
        # A HEAD's answer is complete with its headers: nothing trickles there.
        assert _bounded(calls.pop("exists"))[0] is None
    for name, call in calls.items():
        err, took = _bounded(call)
        assert isinstance(err, ObjectStoreUnavailable), (name, err)
        assert "kiok.s3.request.timeout.ms" in err.message, (name, err.message)
        assert took < 10, (name, took)


def test_a_backup_to_a_trickling_s3_fails_with_503_in_bounded_time(
    standalone_factory: Any, trickling: Callable[[str], TricklingS3]
) -> None:
    """POST /api/v1/admin/backup against an S3 endpoint that never finishes an answer: 503
    object_store_unavailable once the deadline passes, and the master keeps serving."""
    server = trickling("headers")
    node: Standalone = standalone_factory(
        "kiok",
        {
            "KIOK_BACKUP_S3_ENDPOINT": server.endpoint,
            "KIOK_BACKUP_S3_REGION": REGION,
            "KIOK_BACKUP_S3_BUCKET": "trickled",
            "KIOK_BACKUP_S3_ACCESS_KEY": ACCESS_KEY,
            "KIOK_BACKUP_S3_SECRET_KEY": SECRET_KEY,
            "KIOK_S3_REQUEST_TIMEOUT_MS": "1000",
        },
    )
    began = time.monotonic()
    r = node.api("POST", "/api/v1/admin/backup", timeout=BOUND_S)
    assert time.monotonic() - began < BOUND_S
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "object_store_unavailable", r.text
    assert server.requests >= 1
    assert node.api("GET", "/api/v1/dags").status_code == 200


# --- notifications --------------------------------------------------------------------------


class FloodingReceiver(RawServer):
    """A webhook receiver that answers 200 with a 256 MiB body, sent as fast as the client
    takes it; ``sent`` counts the body bytes the client accepted (TCP buffers aside)."""

    TOTAL = 256 * 1024 * 1024

    def __init__(self) -> None:
        self.sent = 0
        self.requests = 0
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        if not read_head(conn):
            return
        self.requests += 1
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {self.TOTAL}\r\n\r\n".encode())
        block = b"\0" * (1024 * 1024)
        for _ in range(self.TOTAL // len(block)):
            if self.stopping.is_set():
                break
            conn.sendall(block)
            self.sent += len(block)


@pytest.fixture(scope="module")
def notify_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    env = {
        "KIOK_NOTIFY_RETRY_INITIAL_MS": "200",
        "KIOK_NOTIFY_RETRY_MAX_MS": "400",
        "KIOK_NOTIFY_MAX_ATTEMPTS": "3",
        "KIOK_NOTIFY_CHECK_INTERVAL_MS": "200",
        "KIOK_NOTIFY_TIMEOUT_MS": "10000",
        # The receivers listen on 127.0.0.1: loopback allowed, link-local still blocked.
        "KIOK_NOTIFY_WEBHOOK_BLOCKED_NETWORKS": "169.254.0.0/16,fe80::/10",
    }
    node = Standalone(tmp_path_factory.mktemp("notify") / "kiok", env)
    node.start()
    yield node
    node.stop()


def _run_log_has(node: Standalone, run_id: str, text: str, timeout_s: float = 30) -> str:
    return str(
        node.wait_for(lambda: (log := node.log(run_id, "__run__")) and text in log and log, timeout_s, text)
    )


def test_a_webhook_answer_body_is_never_read_whole(notify_node: Standalone) -> None:
    """A hostile webhook receiver answers 200 with a huge body: the leader must not pull it
    into memory (it only needs the status). Delivered, and the receiver could push no more
    than socket buffers hold before the leader hung up."""
    receiver = FloodingReceiver()
    try:
        notify_node.register(
            f"""
dag:
  id: flood_hook
  notify:
    on_failure: [{{webhook: {{url: "{receiver.url}"}}}}]
tasks:
  - {{id: boom, script: "exit 1"}}
"""
        )
        run_id = notify_node.trigger("flood_hook")
        assert notify_node.wait_run(run_id)["state"] == "FAILED"
        _run_log_has(notify_node, run_id, "notification on_failure → webhook delivered (200)")
        assert receiver.requests == 1
        assert receiver.sent < 32 * 1024 * 1024, f"the leader read {receiver.sent} bytes of the answer"
    finally:
        receiver.stop()


@pytest.mark.parametrize(
    ("conn_type", "props", "target"),
    [
        # A webhook URL from a connection that httpx cannot even parse.
        ("generic", {"url": "http://[::1"}, '{webhook: {url: "${conn.bad_target.url}"}}'),
        # A sender with a CRLF (an attempt at header injection: a Bcc line), in a connection
        # that is not of type smtp, so the API's smtp check never saw it.
        (
            "generic",
            {"host": "127.0.0.1", "port": "9", "from": "kiok@example.com\r\nBcc: evil@example.com"},
            "{email: {connection: bad_target, to: [ops@example.com]}}",
        ),
    ],
)
def test_a_notification_that_cannot_be_built_is_given_up_not_spun(
    notify_node: Standalone, conn_type: str, props: dict[str, str], target: str
) -> None:
    """A delivery that fails before anything is sent (an unusable URL, a header value with a
    line break) counts as a failed attempt like any other: retried with back-off, then given
    up with a line in the run log (not an exception that escapes and is retried at once,
    forever, with nothing in the log)."""
    r = notify_node.api(
        "POST",
        "/api/v1/connections",
        json={"connectionId": "bad_target", "type": conn_type, "properties": props},
    )
    assert r.status_code == 201, r.text
    dag_id = f"unbuildable_{'hook' if 'webhook' in target else 'mail'}"
    notify_node.register(
        f"dag:\n  id: {dag_id}\n  notify:\n    on_failure: [{target}]\n"
        'tasks:\n  - {id: boom, script: "exit 1"}\n'
    )
    run_id = notify_node.trigger(dag_id)
    assert notify_node.wait_run(run_id)["state"] == "FAILED"
    log = _run_log_has(notify_node, run_id, "failed after 3 attempts")
    assert "attempt 1 failed" in log and "attempt 2 failed" in log


def test_an_smtp_connection_with_a_line_break_in_a_header_field_is_refused(notify_node: Standalone) -> None:
    """``from`` of an smtp connection goes into the From header: a CR or LF there is refused
    when the connection is stored (400 naming the property), like a missing host."""
    for field, value in (("from", "kiok@example.com\r\nBcc: evil@example.com"), ("from", "a@b.c\nX: y")):
        r = notify_node.api(
            "POST",
            "/api/v1/connections",
            json={
                "connectionId": "smtp_crlf",
                "type": "smtp",
                "properties": {"host": "127.0.0.1", field: value},
            },
        )
        assert r.status_code == 400, r.text
        assert field in r.text


@pytest.mark.parametrize(
    ("case", "token"),
    [
        # A token pasted with its trailing newline (``-p token=$(cat token.txt)`` keeps none,
        # a file or a prompt can): h11 refuses the header and quotes the value it refused.
        ("newline", "tok-s3cret-4f1d9a\n"),
        # A non-ASCII value: an encoding error, not an HTTP one.
        ("non_ascii", "tök-s3cret-4f1d9a"),
    ],
)
def test_a_webhook_header_secret_never_reaches_the_run_log(
    notify_node: Standalone, case: str, token: str
) -> None:
    """A header value from a connection that cannot go on the wire fails the attempt with a
    message naming the header, never quoting the secret; the notification is given up after
    its attempts like any other failure."""
    receiver = FloodingReceiver()  # never reached: the request cannot be built
    try:
        conn_id = f"leaky_{case}"
        r = notify_node.api(
            "POST",
            "/api/v1/connections",
            json={"connectionId": conn_id, "type": "generic", "properties": {"token": token}},
        )
        assert r.status_code == 201, r.text
        dag_id = f"leaky_hook_{case}"
        notify_node.register(
            f"""
dag:
  id: {dag_id}
  notify:
    on_failure: [{{webhook: {{url: "{receiver.url}", headers: {{X-Token: "${{conn.{conn_id}.token}}"}}}}}}]
tasks:
  - {{id: boom, script: "exit 1"}}
"""
        )
        run_id = notify_node.trigger(dag_id)
        assert notify_node.wait_run(run_id)["state"] == "FAILED"
        log = _run_log_has(notify_node, run_id, "failed after 3 attempts")
        assert "s3cret-4f1d9a" not in log, log
        assert "X-Token" in log, log
    finally:
        receiver.stop()


class TricklingSmtp(RawServer):
    """An "SMTP server" that greets one byte every 0.2 s and never finishes the greeting
    line; ``open`` counts the connections the client has not hung up yet."""

    def __init__(self) -> None:
        self.accepted = 0
        self.open = 0
        self._lock = threading.Lock()
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        with self._lock:
            self.accepted += 1
            self.open += 1
        try:
            conn.sendall(b"220 ")
            while not self.stopping.wait(0.2):  # the hostile server's pace
                readable, _, _ = select.select([conn], [], [], 0)
                if readable and not conn.recv(4096):
                    return  # the client hung up
                conn.sendall(b"x")
        finally:
            with self._lock:
                self.open -= 1


def test_a_trickling_smtp_server_holds_no_thread_past_the_deadline(standalone_factory: Any) -> None:
    """An SMTP server that keeps the greeting coming a byte at a time: each attempt ends at
    kiok.notify.timeout.ms and its connection is closed then (not left to a thread that
    waits for the server for ever, one more per attempt, until the master's worker threads,
    which archival, backups and log reads share, are all stuck)."""
    server = TricklingSmtp()
    try:
        node: Standalone = standalone_factory(
            "kiok",
            {
                "KIOK_NOTIFY_TIMEOUT_MS": "1000",
                "KIOK_NOTIFY_MAX_ATTEMPTS": "2",
                "KIOK_NOTIFY_RETRY_INITIAL_MS": "100",
                "KIOK_NOTIFY_CHECK_INTERVAL_MS": "200",
            },
        )
        r = node.api(
            "POST",
            "/api/v1/connections",
            json={
                "connectionId": "slow-smtp",
                "type": "smtp",
                "properties": {"host": "127.0.0.1", "port": str(server.port), "from": "kiok@example.com"},
            },
        )
        assert r.status_code == 201, r.text
        node.register(
            "dag:\n  id: slow_mail\n  notify:\n"
            "    on_failure: [{email: {connection: slow-smtp, to: [ops@example.com]}}]\n"
            'tasks:\n  - {id: boom, script: "exit 1"}\n'
        )
        run_id = node.trigger("slow_mail")
        assert node.wait_run(run_id)["state"] == "FAILED"
        _run_log_has(node, run_id, "failed after 2 attempts")
        assert server.accepted == 2
        node.wait_for(lambda: server.open == 0, 10, "kiok to hang up on the trickling SMTP server")
    finally:
        server.stop()


# --- backups and restore ----------------------------------------------------------------------


@pytest.mark.parametrize("spelled", ["%2E%2E", ".%2E"])
def test_a_restore_of_backup_dotdot_touches_nothing(
    standalone_factory: Any, tmp_path: Path, spelled: str
) -> None:
    """``POST /api/v1/admin/backups/../restore`` (the dots percent-encoded, so no client or
    proxy folds them): the id is not a backup id, so 404, and nothing on disk goes. (The
    restore's clean-up removed its scratch directory ``<data>/restore-work/<id>`` whatever
    the outcome: with ``..`` that was the whole data directory.)"""
    node: Standalone = standalone_factory("kiok", {"KIOK_BACKUP_DIR": str(tmp_path / "backups")})
    node.register("dag: {id: keepme}\ntasks:\n  - {id: t, script: 'true'}\n")
    # A restore done before: it leaves <data>/restore-work behind (its own copy removed).
    taken = node.api("POST", "/api/v1/admin/backup", timeout=120)
    assert taken.status_code == 201, taken.text
    backup_id = taken.json()["backupId"]
    done = node.api(
        "POST", f"/api/v1/admin/backups/{backup_id}/restore", json={"confirm": backup_id}, timeout=120
    )
    assert done.status_code == 200, done.text
    node._token = None  # the restored store's tokens: sign in again
    assert (node.data_dir / "restore-work").is_dir()
    before = sorted(p.name for p in node.data_dir.iterdir())
    assert before, "the data directory is empty before the test even starts"
    r = node.api("POST", f"/api/v1/admin/backups/{spelled}/restore", json={"confirm": ".."})
    assert r.status_code in (400, 404), r.text
    assert sorted(p.name for p in node.data_dir.iterdir()) == before
    assert [d["dagId"] for d in node.api("GET", "/api/v1/dags").json()["dags"]] == ["keepme"]
