"""``S3ObjectStore`` against a hostile or broken S3-compatible server: a proxy on 127.0.0.1
in front of moto that misbehaves on demand (ignores ``Range`` or ``prefix``, lists forever,
leaves out fields, never answers). The bucket is less trusted than the masters: whatever it
does, a read stays bounded in memory and time and fails as ``ObjectStoreUnavailable``."""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from kiok.master.archival import LogArchiver, OrphanSweep
from kiok.store.objects import DEFAULT_MAX_LIST_KEYS, ObjectStoreUnavailable, S3ObjectStore
from tests.s3_fixture import ACCESS_KEY, REGION, SECRET_KEY, MotoS3
from tests.unit.test_log_archive import Rig, _write

#: Pages an endless listing serves before it gives up (so that a client without a bound ends).
ENDLESS_PAGES = 200


class HostileS3(ThreadingHTTPServer):
    """Relays to moto, with the faults in ``faults``:

    - ``no_range``: drops the ``Range`` header (the whole object comes back);
    - ``no_prefix``: drops a listing's ``prefix`` (every key of the bucket comes back);
    - ``endless_same`` / ``endless_new``: a listing that is always truncated, with a fresh
      continuation token each page, the same key every page or a new one;
    - ``no_date``: listings without ``LastModified``;
    - ``silent``: accepts the request and never answers.
    """

    daemon_threads = True

    def __init__(self, moto: MotoS3) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        self.moto_port = moto.port
        self.endpoint = f"http://127.0.0.1:{self.server_address[1]}"
        self.faults: set[str] = set()
        self.pages = 0
        self.stopping = threading.Event()

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up mid-answer (the point of several faults here) is no error:
        nothing printed (the default prints a traceback into the test run's output)."""


class _Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HostileS3

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _listing(self, bucket: str, prefix: str) -> bytes:
        hostile = self.server
        hostile.pages += 1
        n = hostile.pages
        key = f"{prefix}k" if "endless_same" in hostile.faults else f"{prefix}k{n:08d}"
        more = "true" if n < ENDLESS_PAGES else "false"
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>{bucket}</Name><Prefix>{prefix}</Prefix><KeyCount>1</KeyCount>"
            f"<MaxKeys>1000</MaxKeys><IsTruncated>{more}</IsTruncated>"
            f"<NextContinuationToken>token-{n}</NextContinuationToken>"
            f"<Contents><Key>{key}</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>"
            '<ETag>"0"</ETag><Size>1</Size><StorageClass>STANDARD</StorageClass></Contents>'
            "</ListBucketResult>"
        ).encode()

    def _relay(self) -> None:
        faults = self.server.faults
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if "silent" in faults:
            self.server.stopping.wait(30)
            self.close_connection = True
            return
        url = urlsplit(self.path)
        query = parse_qsl(url.query, keep_blank_values=True)
        listing = self.command == "GET" and ("list-type", "2") in query
        if listing and faults & {"endless_same", "endless_new"}:
            prefix = dict(query).get("prefix", "")
            self._send(200, [("Content-Type", "application/xml")], self._listing(url.path.strip("/"), prefix))
            return
        if listing and "no_prefix" in faults:
            query = [(k, v) for k, v in query if k != "prefix"]
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        if "no_range" in faults:
            headers = {k: v for k, v in headers.items() if k.lower() != "range"}
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.moto_port, timeout=10)
        try:
            path = url.path + (f"?{urlencode(query)}" if query else "")
            upstream.request(self.command, path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            status, answer_headers = answer.status, answer.getheaders()
        finally:
            upstream.close()
        if listing and "no_date" in faults:
            data = re.sub(rb"<LastModified>[^<]*</LastModified>", b"", data)
        if self.command == "HEAD":
            self.send_response(status)
            for name, value in answer_headers:
                if name.lower() not in ("transfer-encoding", "connection", "date", "server"):
                    self.send_header(name, value)
            self.end_headers()
            return
        self._send(status, answer_headers, data)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _relay


@pytest.fixture
def hostile(s3_moto: MotoS3) -> Iterator[HostileS3]:
    server = HostileS3(s3_moto)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.stopping.set()
    server.shutdown()
    server.server_close()
    thread.join()


def _stores(
    moto: MotoS3, hostile: HostileS3, *, max_list_keys: int = DEFAULT_MAX_LIST_KEYS, timeout_s: float = 3.0
) -> tuple[S3ObjectStore, S3ObjectStore]:
    """The same bucket and prefix, straight to moto (to write) and through the proxy."""
    bucket = moto.new_bucket()
    direct = moto.object_store("joblogs", bucket=bucket)
    through = S3ObjectStore(
        endpoint=hostile.endpoint,
        region=REGION,
        bucket=bucket,
        prefix="joblogs",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        max_list_keys=max_list_keys,
        connect_timeout_s=timeout_s,
        read_timeout_s=timeout_s,
    )
    return direct, through


def test_a_range_read_never_takes_more_than_the_range(s3_moto: MotoS3, hostile: HostileS3) -> None:
    """A server that ignores ``Range`` sends the whole object (a multi-GiB one where a 64 KiB
    log frame or a manifest was asked for): kiok reads the bytes it asked for and no more,
    and refuses bytes that come from the wrong offset."""
    direct, through = _stores(s3_moto, hostile)
    big = bytes(range(256)) * (12 * 1024)  # 3 MiB
    direct.put("run-a/t/seg", big)
    hostile.faults.add("no_range")
    assert through.get_range("run-a/t/seg", 0, 10) == big[:10]
    with pytest.raises(ObjectStoreUnavailable, match="byte range"):
        through.get_range("run-a/t/seg", 100, 110)


def test_a_listing_outside_the_prefix_is_refused(s3_moto: MotoS3, hostile: HostileS3) -> None:
    """A server that ignores ``prefix`` answers every key of the bucket: taken as the run's
    keys, retention would delete every other run's archived logs (and the backups, in a
    shared bucket). kiok refuses such a listing instead."""
    direct, through = _stores(s3_moto, hostile)
    direct.put("run-a/t/0000", b"a")
    direct.put("run-b/t/0000", b"b")
    s3_moto.object_store("backups", bucket=direct.bucket).put(
        "20240101T000000000Z-abcdef/manifest.json", b"{}"
    )
    assert through.list("run-a/") == ["run-a/t/0000"]
    hostile.faults.add("no_prefix")
    with pytest.raises(ObjectStoreUnavailable, match="outside"):
        through.list("run-a/")
    with pytest.raises(ObjectStoreUnavailable, match="outside"):
        through.list_dated("")


def test_a_listing_that_does_not_advance_is_cut_short(s3_moto: MotoS3, hostile: HostileS3) -> None:
    """Truncated pages, a fresh continuation token each time, the same key again: botocore's
    paginator only catches a token repeated at once; kiok stops at the first page that does
    not advance (S3 lists in key order)."""
    _, through = _stores(s3_moto, hostile)
    hostile.faults.add("endless_same")
    with pytest.raises(ObjectStoreUnavailable, match="does not advance"):
        through.list("")
    assert hostile.pages == 2


def test_a_listing_that_never_ends_is_cut_short(s3_moto: MotoS3, hostile: HostileS3) -> None:
    """New keys forever: the listing fails past ``max_list_keys`` instead of filling memory."""
    _, through = _stores(s3_moto, hostile, max_list_keys=100)
    hostile.faults.add("endless_new")
    with pytest.raises(ObjectStoreUnavailable, match="more than 100 keys"):
        through.list("")
    assert hostile.pages <= 101


def test_a_listing_with_missing_fields_is_unavailable_not_a_crash(
    s3_moto: MotoS3, hostile: HostileS3
) -> None:
    """An entry without ``LastModified`` must not escape as a KeyError (it would end the
    leader's archiver task for the rest of its term, or answer a 500 traceback)."""
    direct, through = _stores(s3_moto, hostile)
    direct.put("run-a/t/0000", b"a")
    hostile.faults.add("no_date")
    with pytest.raises(ObjectStoreUnavailable, match="LastModified"):
        through.list_dated("")


def test_a_server_that_never_answers_times_out(s3_moto: MotoS3, hostile: HostileS3) -> None:
    """Accepts the connection, never answers: the read timeout (and few retries) bound it."""
    _, through = _stores(s3_moto, hostile, timeout_s=0.5)
    hostile.faults.add("silent")
    began = time.monotonic()
    with pytest.raises(ObjectStoreUnavailable):
        through.get_range("run-a/t/0000", 0, 10)
    with pytest.raises(ObjectStoreUnavailable):
        through.list("")
    assert time.monotonic() - began < 10


def _through(rig: Rig, hostile: HostileS3) -> S3ObjectStore:
    return S3ObjectStore(
        endpoint=hostile.endpoint,
        region=REGION,
        bucket=rig.bucket,
        prefix="joblogs",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
    )


async def test_retention_through_a_server_ignoring_prefix_deletes_no_other_run(
    tmp_path: Path, s3_moto: MotoS3, hostile: HostileS3
) -> None:
    rig = Rig(tmp_path, s3_moto)
    try:
        _write(rig, "gone", "t", range(3))
        kept = _write(rig, "kept", "t", range(3))
        await rig.archiver().flush()
        rig.store = _through(rig, hostile)
        hostile.faults.add("no_prefix")
        rig.joblog.delete_runs(["gone"])
        await rig.archiver().flush()  # the listing is refused: the tombstone waits
        assert rig.joblog.archive_tombstones() == ["gone"]
        assert rig.stats.failing and rig.stats.errors == 1
        assert rig.read_all("kept", "t", 1 << 20) == kept
        hostile.faults.clear()
        await rig.archiver().flush()
        assert rig.joblog.archive_tombstones() == []
        assert sorted(k.split("/")[1] for k in s3_moto.all_bytes(rig.bucket)) == ["kept"]
    finally:
        rig.joblog.close()


async def test_a_malformed_listing_does_not_end_the_archiver(
    tmp_path: Path, s3_moto: MotoS3, hostile: HostileS3
) -> None:
    """The orphan sweep after a restore lists the archive: a listing kiok cannot read fails
    the pass like an unreachable store (next pass tries again), never escapes ``flush``."""
    rig = Rig(tmp_path, s3_moto)
    try:
        _write(rig, "r", "t", range(3))
        rig.store = _through(rig, hostile)
        sweep = OrphanSweep(known_run=lambda run: run == "r", restored_at=lambda: 0, grace_ms=0)
        archiver = LogArchiver(
            rig.log,
            rig.joblog,
            rig.store,
            rig.cipher,
            lambda: 1,
            interval_s=60,
            stats=rig.stats,
            orphans=sweep,
        )
        archiver._todo |= set(rig.joblog.watch_unarchived(True))
        hostile.faults.add("no_date")
        assert await archiver.flush() > 0
        assert rig.stats.failing and rig.stats.errors == 1
    finally:
        rig.joblog.close()
