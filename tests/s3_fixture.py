"""A real S3-compatible server for tests: moto's ``ThreadedMotoServer`` on 127.0.0.1.

Use it from a test module with ``from tests.s3_fixture import s3_moto, s3_server`` (pytest
finds fixtures imported into a module). ``s3_server`` yields the endpoint URL; ``s3_moto``
yields the ``MotoS3`` handle, whose ``stop()``/``start()`` take the server away and bring it
back on the same port (moto keeps its buckets in memory across the restart, like a real S3
that was only unreachable). moto accepts any credentials, so signatures are never checked.
"""

from __future__ import annotations

import socket
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


class MotoS3:
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

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def new_bucket(self) -> str:
        """A fresh bucket (moto's state is per process, so tests never share one)."""
        name = f"kiok-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def object_store(self, prefix: str) -> S3ObjectStore:
        """kiok's S3 ``ObjectStore`` on a fresh bucket of this server (5 MiB parts: S3's
        smallest, so multipart uploads are exercised by modest objects)."""
        return S3ObjectStore(
            endpoint=self.endpoint,
            region=REGION,
            bucket=self.new_bucket(),
            prefix=prefix,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
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


@pytest.fixture
def s3_moto() -> Iterator[MotoS3]:
    server = MotoS3().start()
    yield server
    server.stop()


@pytest.fixture
def s3_server(s3_moto: MotoS3) -> str:
    """The endpoint URL of a moto S3 server on 127.0.0.1."""
    return s3_moto.endpoint
