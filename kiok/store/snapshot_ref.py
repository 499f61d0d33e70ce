"""What Raft carries to a master that is behind instead of a store snapshot: a reference to
it (its digest, which names it, its size, the Raft header, and the admin URL of the master
that wrote it), and the shelf of snapshot files each master keeps for others to fetch.

PySyncObj sent a snapshot file as one burst of messages queued in a buffer grown with
``+=`` and drained by slicing (quadratic in the size, the whole file in memory on the
sender) and lost chunks on reconnects: past ~30 MB a snapshot never arrived whole
(docs/performance.md). A reference fits in one message; the master that needs the file
streams it over HTTP (a ``Fetch``) into its shelf with ``receive``, which checks the size
and the digest before the file is kept, so a partial or damaged download never reaches
the stores (``snapshot.read`` checks the digest again before touching them).

A shelf keeps its ``keep`` newest files: a master that fetches a file the writer has since
pruned gets 404 and fetches the writer's next reference (PySyncObj sends it again after a
refused install); a download already under way keeps reading the deleted file's data.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgpack

from kiok.store import snapshot

log = logging.getLogger(__name__)

KIND = "kiok-snapshot-ref"
VERSION = 1
#: Snapshot files a shelf keeps (its own and fetched ones).
KEEP = 2
_DIGEST_SIZE = 32
_NAME = re.compile(r"[0-9a-f]{64}")
#: A reference holds PySyncObj's last entry (up to a few MB, like a snapshot's header).
_MAX_FIRST = 1 << 30
#: A failed fetch is tried again this much later, doubled each time, FETCH_ATTEMPTS in all,
#: before the install is refused: PySyncObj answers a refused install as if it had worked,
#: and the leader then sends it every entry after its snapshot again; retrying here keeps
#: that to once per few seconds instead of once per heartbeat.
REFETCH_S = 1.0
FETCH_ATTEMPTS = 3


@dataclass(frozen=True)
class SnapshotRef:
    """A snapshot file as another master can fetch it."""

    #: Hex BLAKE2b-256 the file ends with (of everything before it): its name on every shelf.
    digest: str
    #: The file's size in bytes, digest included.
    size: int
    #: The Raft index of the state it holds.
    index: int
    #: Admin API base URL of the master that wrote it (``GET {url}/raft/snapshots/{digest}``).
    url: str
    #: PySyncObj's header: ``last``, ``prev`` (its last two entries, [command, index, term])
    #: and ``cluster``, the commands left out (up to MBs each: the file's header has them).
    raft: dict[str, Any]

    def encode(self) -> bytes:
        body = {"kind": KIND, "version": VERSION, "digest": self.digest, "size": self.size}
        body |= {"index": self.index, "url": self.url, "raft": self.raft}
        data: bytes = msgpack.packb(body, use_bin_type=True)
        return data


def load(path: Path) -> SnapshotRef | None:
    """The reference in ``path``, or None when it holds a whole snapshot (written before
    references, or by a master without an admin URL). ValueError when it is neither."""
    with open(path, "rb") as f:  # a whole snapshot starts with its own header: read only that
        try:
            body = next(msgpack.Unpacker(f, raw=False, max_buffer_size=_MAX_FIRST))
        except Exception:
            return None
    if not isinstance(body, dict) or body.get("kind") != KIND:
        return None
    if body.get("version") != VERSION or not _NAME.fullmatch(str(body.get("digest"))):
        raise ValueError(f"{path}: a snapshot reference this master cannot read")
    return SnapshotRef(body["digest"], int(body["size"]), int(body["index"]), str(body["url"]), body["raft"])


def store(path: Path, ref: SnapshotRef) -> None:
    """Write ``ref`` to ``path`` durably (PySyncObj renames it into place)."""
    with open(path, "wb") as f:
        f.write(ref.encode())
        f.flush()
        os.fsync(f.fileno())


def receive(chunks: Iterable[bytes], ref: SnapshotRef, dest: Path) -> None:
    """Write the downloaded ``chunks`` to ``dest`` if they are exactly the file ``ref``
    names: the right size, ending in the digest of the rest, which is ``ref.digest``.
    Otherwise ValueError, and ``dest`` does not exist."""
    digest = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    body = ref.size - _DIGEST_SIZE
    seen = 0
    tail = b""
    try:
        with open(dest, "wb") as f:
            for chunk in chunks:
                if seen + len(chunk) > ref.size:
                    raise ValueError(f"snapshot {ref.digest[:12]}: more than the {ref.size} bytes announced")
                if seen < body:
                    digest.update(chunk[: body - seen])
                tail += chunk[max(0, body - seen) :]
                f.write(chunk)
                seen += len(chunk)
            if seen != ref.size:
                raise ValueError(f"snapshot {ref.digest[:12]}: {seen} of {ref.size} bytes arrived")
            if tail != digest.digest() or tail.hex() != ref.digest:
                raise ValueError(f"snapshot {ref.digest[:12]}: damaged in transit (digest mismatch)")
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


class Fetch(Protocol):
    def __call__(self, ref: SnapshotRef, dest: Path) -> None:
        """Download the file ``ref`` names from ``ref.url`` into ``dest`` (through
        ``receive``). Blocking (called on the Raft thread). Raises on any failure, with
        ``dest`` absent; never logs or raises a credential."""


class Shelf:
    """A directory of snapshot files named by their digest, the newest ``keep`` kept."""

    def __init__(self, directory: Path, keep: int = KEEP) -> None:
        self.directory = directory
        self._keep = keep

    def path(self, digest: str) -> Path | None:
        """The file named ``digest`` if this shelf has it (None for a name that is not a digest)."""
        if not _NAME.fullmatch(digest):
            return None
        path = self.directory / digest
        return path if path.is_file() else None

    def scratch(self, purpose: str = "incoming") -> Path:
        """Where to write a file before ``keep``-ing it: one per ``purpose`` (a download on the
        Raft thread, a snapshot write on its writer thread), one at a time each."""
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory / f"{purpose}.tmp"

    def keep(self, scratch: Path, digest: str) -> Path:
        """Move a complete, checked ``scratch`` file onto the shelf as ``digest``; drop
        the oldest files past ``keep``."""
        path = self.directory / digest
        os.replace(scratch, path)
        path.touch()  # newest, also when the same state was shelved before
        names = [p for p in self.directory.iterdir() if _NAME.fullmatch(p.name)]
        for old in sorted(names, key=lambda p: p.stat().st_mtime_ns)[: -self._keep]:
            old.unlink(missing_ok=True)
        return path


@dataclass(frozen=True)
class Written:
    """A snapshot file written to the shelf's scratch, not yet on the shelf (``publish``)."""

    scratch: Path
    ref: SnapshotRef


class RefSnapshots:
    """Writing and installing snapshots that travel as references. ``write_file`` may run on
    any thread (one write at a time); ``publish``, ``write`` and ``read`` run on the Raft
    thread."""

    def __init__(
        self,
        shelf: Shelf,
        url: Callable[[], str],
        fetch: Fetch,
        wait: Callable[[float], bool],
    ) -> None:
        """``wait(seconds)`` pauses between attempts and returns True to give up (stopping)."""
        self.shelf = shelf
        self._url = url
        self._fetch = fetch
        self._wait = wait

    def write(self, filename: Path, parts: Sequence[snapshot.Part], header: dict[str, Any]) -> SnapshotRef:
        """Write the stores' snapshot onto the shelf and its reference to ``filename``, now."""
        return self.publish(self.write_file(snapshot.pin(parts), header), filename)

    def write_file(
        self, pinned: snapshot.Pinned, header: dict[str, Any], cancelled: Callable[[], bool] = lambda: False
    ) -> Written:
        """Write the snapshot of ``pinned`` to the shelf's scratch (``snapshot.write``: raises
        WriteCancelled when ``cancelled()``, the scratch removed)."""
        scratch = self.shelf.scratch("writing")
        digest = snapshot.write(scratch, pinned, header, cancelled).hex()
        brief = header | {"last": [b"", *header["last"][1:]], "prev": [b"", *header["prev"][1:]]}
        ref = SnapshotRef(digest, scratch.stat().st_size, pinned.index, self._url(), brief)
        return Written(scratch, ref)

    def publish(self, written: Written, filename: Path) -> SnapshotRef:
        """Put a written snapshot on the shelf, then its reference at ``filename``, atomically
        (a reader sees the previous reference or this one, never part of one)."""
        self.shelf.keep(written.scratch, written.ref.digest)
        pending = filename.with_name(filename.name + ".ref")
        store(pending, written.ref)
        os.replace(pending, filename)
        return written.ref

    def read(self, filename: Path, parts: Sequence[snapshot.Part]) -> snapshot.Loaded:
        """Install what ``filename`` names (or holds: a whole snapshot is still read) unless
        the stores have it already. Raises, the stores untouched, when the file cannot be had
        whole; PySyncObj then logs it and the leader offers its snapshot again."""
        ref = load(filename)
        if ref is None:
            return snapshot.read(filename, parts)
        if parts[0].applied_index() >= ref.index:  # a restart: only the header is needed
            path = self.shelf.path(ref.digest)
            if path is None:  # PySyncObj's journal cannot match it: it starts again from here
                log.warning("snapshot %s is no longer on this master's shelf", ref.digest[:12])
                return snapshot.Loaded(ref.raft, ref.index, restored=False)
            return snapshot.Loaded(snapshot.header(path), ref.index, restored=False)
        return snapshot.read(self._fetched(ref), parts)

    def _fetched(self, ref: SnapshotRef) -> Path:
        """The file ``ref`` names: on the shelf already, or downloaded onto it now."""
        path = self.shelf.path(ref.digest)
        if path is not None:
            return path
        for attempt in range(FETCH_ATTEMPTS):
            if attempt and self._wait(REFETCH_S * 2 ** (attempt - 1)):
                break
            scratch = self.shelf.scratch()
            started = time.monotonic()
            try:
                self._fetch(ref, scratch)
            except Exception as e:
                log.warning(
                    "snapshot %s (%d bytes) from %s refused (try %d of %d): %s",
                    ref.digest[:12],
                    ref.size,
                    ref.url,
                    attempt + 1,
                    FETCH_ATTEMPTS,
                    e,
                )
                continue
            log.info(
                "snapshot %s (%d bytes, raft index %d) fetched from %s in %.1f s",
                ref.digest[:12],
                ref.size,
                ref.index,
                ref.url,
                time.monotonic() - started,
            )
            return self.shelf.keep(scratch, ref.digest)
        raise ValueError(f"snapshot {ref.digest[:12]} could not be fetched")
