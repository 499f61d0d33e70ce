"""The ObjectStore contract, against a directory and two real S3 servers: moto, and SeaweedFS,
which checks request signatures as S3 does."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.config import Settings
from kiok.errors import InvalidInput
from kiok.store.objects import (
    DirObjectStore,
    ObjectMissing,
    ObjectStore,
    ObjectStoreUnavailable,
    S3ObjectStore,
    s3_store_from_settings,
)
from tests.s3_fixture import ACCESS_KEY, SECRET_KEY, MotoS3, SeaweedS3

MiB = 1024 * 1024


@pytest.fixture(params=["dir", "s3", "seaweed"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "dir":
        yield DirObjectStore(tmp_path / "objects")
        return
    server: MotoS3 | SeaweedS3 = request.getfixturevalue("s3_moto" if request.param == "s3" else "s3_seaweed")
    yield server.object_store("pre/fix")


def test_put_get_range_exists_list_delete(store: ObjectStore) -> None:
    store.put("a/b/one", b"0123456789")
    store.put("a/two", b"x")
    store.put("b/three", b"")
    assert store.get("a/b/one") == b"0123456789"
    assert store.get_range("a/b/one", 2, 5) == b"234"
    assert store.get_range("a/b/one", 8, 100) == b"89"
    assert store.get_range("a/b/one", 3, 3) == b""
    assert store.exists("a/two") and not store.exists("a/nope")
    assert store.list("a/") == ["a/b/one", "a/two"]
    assert store.list("") == ["a/b/one", "a/two", "b/three"]
    store.put("a/two", b"overwritten")
    assert store.get("a/two") == b"overwritten"
    store.delete("a/two")
    store.delete("a/two")  # deleting an absent key is not an error
    assert store.list("a/") == ["a/b/one"]
    with pytest.raises(ObjectMissing):
        store.get("a/two")
    with pytest.raises(ObjectMissing):
        store.get_range("a/two", 0, 1)


def test_put_stream_small_and_multipart(store: ObjectStore) -> None:
    store.put_stream("small", [b"ab", b"", b"cd"])
    assert store.get("small") == b"abcd"
    # 11 MiB + 3 bytes in odd-sized chunks: three parts of 5 MiB, 5 MiB and the rest.
    chunk = bytes(range(256)) * 4096 + b"xyz"  # 1 MiB + 3
    chunks = [chunk] * 11
    store.put_stream("big/object", chunks)
    data = store.get("big/object")
    assert data == b"".join(chunks)
    assert store.get_range("big/object", 5 * MiB - 2, 5 * MiB + 2) == data[5 * MiB - 2 : 5 * MiB + 2]


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", "a\\b", "a/"])
def test_bad_keys_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidInput):
        store.put(key, b"x")


def test_dir_store_writes_atomically_and_ignores_temporaries(tmp_path: Path) -> None:
    store = DirObjectStore(tmp_path / "o")
    store.put("k/v", b"1")
    (tmp_path / "o" / "k" / ".v.junk.kiok-tmp").write_bytes(b"torn")
    assert store.list("") == ["k/v"]

    def boom() -> Iterator[bytes]:
        yield b"partial"
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError):
        store.put_stream("k/v", boom())
    assert store.get("k/v") == b"1"  # the old object survives a failed put
    assert sorted(p.name for p in (tmp_path / "o" / "k").iterdir()) == [".v.junk.kiok-tmp", "v"]


def test_unreachable_s3_is_unavailable_not_missing(s3_moto: MotoS3) -> None:
    store = S3ObjectStore(
        endpoint=s3_moto.endpoint,
        region="",
        bucket=s3_moto.new_bucket(),
        connect_timeout_s=1,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
    )
    store.put("k", b"v")
    s3_moto.stop()
    with pytest.raises(ObjectStoreUnavailable):
        store.get("k")
    with pytest.raises(ObjectStoreUnavailable):
        store.put("k2", b"v")
    s3_moto.start()
    assert store.get("k") == b"v"
    missing_bucket = S3ObjectStore(
        endpoint=s3_moto.endpoint,
        region="",
        bucket="no-such-bucket-kiok",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
    )
    with pytest.raises(ObjectStoreUnavailable, match="NoSuchBucket"):
        missing_bucket.put("k", b"v")


def test_a_wrong_secret_is_refused_as_unavailable_never_as_missing(s3_seaweed: SeaweedS3) -> None:
    """A server that checks signatures refuses a wrong secret on every call. kiok must see
    the store as unavailable (archival keeps logs local and retries; a backup fails loudly),
    never as "no such object", which would make a read give up on an archived log or a
    sweep think there is nothing to delete."""
    good = s3_seaweed.object_store("sig")
    good.put("log/1", b"archived bytes")
    wrong = s3_seaweed.object_store("sig", bucket=good.bucket, secret_key="not-the-secret")
    with pytest.raises(ObjectStoreUnavailable, match="SignatureDoesNotMatch"):  # the reason, named
        wrong.get("log/1")
    for call in (
        lambda: wrong.get("log/1"),
        lambda: wrong.get_range("log/1", 0, 4),
        lambda: wrong.exists("log/1"),
        lambda: wrong.list(""),
        lambda: wrong.put("log/2", b"x"),
        lambda: wrong.put_stream("log/3", [b"x" * (6 * MiB)]),
        lambda: wrong.delete("log/1"),
    ):
        with pytest.raises(ObjectStoreUnavailable):
            call()
    assert good.get("log/1") == b"archived bytes"  # nothing was written, nothing deleted
    assert good.list("") == ["log/1"]


def test_store_from_settings_and_connection(s3_moto: MotoS3) -> None:
    bucket = s3_moto.new_bucket()
    assert s3_store_from_settings(Settings.load(env={}), "kiok.joblog.s3") is None
    settings = Settings.load(
        env={},
        overrides={
            "kiok.joblog.s3.endpoint": s3_moto.endpoint,
            "kiok.joblog.s3.bucket": bucket,
            "kiok.joblog.s3.prefix": "logs",
            "kiok.joblog.s3.access.key": ACCESS_KEY,
            "kiok.joblog.s3.secret.key": SECRET_KEY,
        },
    )
    store = s3_store_from_settings(settings, "kiok.joblog.s3")
    assert store is not None
    store.put("x", b"1")
    assert s3_moto.all_bytes(bucket) == {"logs/x": b"1"}

    other = s3_moto.new_bucket()
    record = {
        "type": "s3",
        "properties": {"endpoint": s3_moto.endpoint, "bucket": other, "pathStyle": "true"},
    }
    with_conn = settings.with_overrides(kiok_joblog_s3_connection="archive")
    stored: dict[str, dict[str, Any]] = {"archive": record}
    store = s3_store_from_settings(with_conn, "kiok.joblog.s3", stored.get)
    assert store is not None and store.bucket == other and store.prefix == "logs"
    with pytest.raises(InvalidInput, match="no stored connection"):
        s3_store_from_settings(with_conn, "kiok.joblog.s3", dict[str, dict[str, Any]]().get)
    with pytest.raises(InvalidInput, match="not of type s3"):
        wrong: dict[str, dict[str, Any]] = {"archive": {**record, "type": "x"}}
        s3_store_from_settings(with_conn, "kiok.joblog.s3", wrong.get)


def test_dir_store_refuses_symlinks_and_special_files(tmp_path: Path) -> None:
    """Whoever can write to a backup directory cannot make kiok read or delete outside it
    (a symlinked directory or file), nor hang it on a FIFO or read /dev/zero forever."""
    store = DirObjectStore(tmp_path / "objects")
    victim = tmp_path / "victim"
    (victim / "state").mkdir(parents=True)
    (victim / "state" / "x").write_bytes(b"live data")
    (tmp_path / "objects" / "link").symlink_to(victim)
    (tmp_path / "objects" / "zero").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "objects" / "fifo")
    for key in ("link/state/x", "zero", "fifo"):
        with pytest.raises(ObjectMissing):
            store.get(key)
        with pytest.raises(ObjectMissing):
            store.get_range(key, 0, 10)
        assert not store.exists(key)
    store.delete("link/state/x")
    assert (victim / "state" / "x").read_bytes() == b"live data"
    with pytest.raises(InvalidInput):
        store.put("link/state/y", b"outside")
    assert not (victim / "state" / "y").exists()
