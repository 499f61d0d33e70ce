"""Snapshots carried as references (``kiok.store.snapshot_ref``): the writer shelves the
file and hands PySyncObj a reference; a master that is behind fetches the file, which is
refused (the stores untouched) when short, long or damaged, and fetched again; a restart
needs no fetch; a whole snapshot file is still read; the route serves masters only."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from kiok.master import http_errors
from kiok.master.api import raft_snapshots
from kiok.master.api.forward import SERVICE_AUTH
from kiok.store import keys as k
from kiok.store import snapshot, snapshot_ref
from kiok.store.kv import RocksKV

APPLIED = (k.KMS, k.RAFT_APPLIED.encode())
URL = "https://m1.example:8080"


def _parts(root: Path) -> tuple[list[snapshot.Part], RocksKV]:
    state = RocksKV(root / "state", k.SPACES)
    return [snapshot.Part("state", state, k.SPACES, APPLIED)], state


class FromShelf:
    """A ``Fetch`` that copies from the writer's shelf, damaged the first ``bad`` times."""

    def __init__(self, shelf: snapshot_ref.Shelf, bad: list[str]) -> None:
        self.shelf = shelf
        self.bad = bad
        self.calls = 0

    def __call__(self, ref: snapshot_ref.SnapshotRef, dest: Path) -> None:
        self.calls += 1
        path = self.shelf.path(ref.digest)
        assert path is not None
        data = path.read_bytes()
        how = self.bad.pop(0) if self.bad else "whole"
        if how == "short":
            data = data[: len(data) // 2]
        elif how == "flipped":
            data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
        elif how == "long":
            data += b"x"
        snapshot_ref.receive((data[i : i + 4096] for i in range(0, len(data), 4096)), ref, dest)


def _never(seconds: float) -> bool:
    raise AssertionError("no pause expected")


def _writer(tmp_path: Path) -> tuple[snapshot_ref.RefSnapshots, list[snapshot.Part], RocksKV]:
    parts, state = _parts(tmp_path / "a")
    rows = [(k.META, f"dag/{i}".encode(), os.urandom(3000)) for i in range(200)]  # like ciphertext
    state.write([*rows, (*APPLIED, b"40")], sync=False)
    writer = snapshot_ref.RefSnapshots(
        snapshot_ref.Shelf(tmp_path / "a-shelf"),
        lambda: URL,
        FromShelf(snapshot_ref.Shelf(tmp_path / "nowhere"), []),
        _never,
    )
    return writer, parts, state


def test_the_writer_hands_raft_a_small_reference_and_keeps_the_file(tmp_path: Path) -> None:
    writer, parts, _ = _writer(tmp_path)
    ref = writer.write(tmp_path / "dump", parts, {"last": [b"", 40, 2], "prev": [b"", 39, 2], "cluster": []})
    assert (tmp_path / "dump").stat().st_size < 1000
    assert snapshot_ref.load(tmp_path / "dump") == ref
    assert ref.raft["last"] == [b"", 40, 2]  # the entry's command stays in the file's header
    assert ref.index == 40 and ref.url == URL
    path = writer.shelf.path(ref.digest)
    assert path is not None and path.stat().st_size == ref.size > 500_000


@pytest.mark.parametrize("bad", [["short"], ["flipped", "long"], ["short", "flipped", "long", "short"]])
def test_a_partial_or_damaged_download_is_refused_untouched_and_fetched_again(
    tmp_path: Path, bad: list[str]
) -> None:
    writer, src, src_state = _writer(tmp_path)
    head = {"last": [b"x" * 9, 40, 2], "prev": [b"y", 39, 2], "cluster": []}
    ref = writer.write(tmp_path / "dump", src, head)
    parts, state = _parts(tmp_path / "b")
    state.write([(k.META, b"dag/mine", b"x"), (*APPLIED, b"3")], sync=False)
    fetch = FromShelf(writer.shelf, list(bad))
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return False

    reader = snapshot_ref.RefSnapshots(snapshot_ref.Shelf(tmp_path / "b-shelf"), lambda: "", fetch, wait)
    if len(bad) >= snapshot_ref.FETCH_ATTEMPTS:  # given up on: refused, the stores untouched
        with pytest.raises(ValueError, match="could not be fetched"):
            reader.read(tmp_path / "dump", parts)
        assert parts[0].applied_index() == 3 and state.get(k.META, b"dag/mine") == b"x"
        assert reader.shelf.path(ref.digest) is None and not (tmp_path / "b-shelf" / "incoming.tmp").exists()
        assert waits == [1.0, 2.0]
        waits.clear()
    # Refused downloads are tried again after a pause, doubled each time.
    loaded = reader.read(tmp_path / "dump", parts)
    assert loaded.restored and loaded.index == 40 and fetch.calls == len(bad) + 1
    assert waits == [1.0, 2.0][: len(bad) % snapshot_ref.FETCH_ATTEMPTS]
    assert state.get(k.META, b"dag/mine") is None
    assert state.get(k.META, b"dag/7") == src_state.get(k.META, b"dag/7")
    assert loaded.header["last"] == [b"x" * 9, 40, 2]
    # A restart reads the same reference: the stores have it, nothing is fetched, and PySyncObj
    # gets the whole entries back (from the file's header) to match its journal.
    again = reader.read(tmp_path / "dump", parts)
    assert not again.restored and fetch.calls == len(bad) + 1
    assert again.header["last"] == [b"x" * 9, 40, 2] and again.header["prev"] == [b"y", 39, 2]


def test_stopping_gives_up_between_tries(tmp_path: Path) -> None:
    writer, src, _ = _writer(tmp_path)
    writer.write(tmp_path / "dump", src, {"last": [b"", 40, 2], "prev": [b"", 39, 2], "cluster": []})
    parts, _ = _parts(tmp_path / "b")
    fetch = FromShelf(writer.shelf, ["short"])
    reader = snapshot_ref.RefSnapshots(
        snapshot_ref.Shelf(tmp_path / "b-shelf"), lambda: "", fetch, lambda s: True
    )
    with pytest.raises(ValueError, match="could not be fetched"):
        reader.read(tmp_path / "dump", parts)
    assert fetch.calls == 1


def test_a_whole_snapshot_file_is_still_read(tmp_path: Path) -> None:
    _, src, _ = _writer(tmp_path)
    snapshot.write(tmp_path / "whole", src, {"last": [1, 40, 2], "prev": [1, 39, 2], "cluster": []})
    assert snapshot_ref.load(tmp_path / "whole") is None
    parts, _ = _parts(tmp_path / "b")
    reader = snapshot_ref.RefSnapshots(
        snapshot_ref.Shelf(tmp_path / "b-shelf"),
        lambda: "",
        FromShelf(snapshot_ref.Shelf(tmp_path / "nowhere"), []),
        _never,
    )
    assert reader.read(tmp_path / "whole", parts).restored and parts[0].applied_index() == 40


def test_a_shelf_keeps_its_newest_files(tmp_path: Path) -> None:
    shelf = snapshot_ref.Shelf(tmp_path / "shelf", keep=2)
    names = [f"{i:064x}" for i in range(4)]
    for name in names:
        scratch = shelf.scratch()
        scratch.write_bytes(name.encode())
        shelf.keep(scratch, name)
    assert [shelf.path(n) is not None for n in names] == [False, False, True, True]
    assert shelf.path("../etc/passwd") is None and shelf.path("incoming.tmp") is None
    shutil.rmtree(tmp_path / "shelf")


async def test_the_route_serves_a_shelved_file_to_masters_only(tmp_path: Path) -> None:
    shelf = snapshot_ref.Shelf(tmp_path / "shelf")
    scratch = shelf.scratch()
    scratch.write_bytes(b"ciphertext")
    digest = "ab" * 32
    shelf.keep(scratch, digest)
    app = FastAPI()
    http_errors.install(app)
    app.include_router(raft_snapshots.router)
    node = SimpleNamespace(accepts_service_token=lambda t: t == "right", raft=SimpleNamespace(shelf=shelf))
    app.state.node = node
    url = raft_snapshots.PATH + digest
    right = {SERVICE_AUTH: "Bearer right"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m") as client:
        assert (await client.get(url)).status_code == 401
        assert (await client.get(url, headers={SERVICE_AUTH: "Bearer wrong"})).status_code == 401
        answer = await client.get(url, headers=right)
        assert answer.status_code == 200 and answer.content == b"ciphertext"
        assert (await client.get(raft_snapshots.PATH + "cd" * 32, headers=right)).status_code == 404
        assert (await client.get(raft_snapshots.PATH + "incoming.tmp", headers=right)).status_code == 404
