"""The worker's outbox: terminal task reports kept on disk until a master acknowledges them.

Reports hold task errors and results, so each file is encrypted (AES-256-GCM, the file's
key as associated data) with keys the master hands over in the WELCOME and that live only
in memory (``kiok.security.kms.worker_outbox_keyring``): the worker's disk alone reads
nothing. Until the first WELCOME the outbox has no keys; it needs none, since the worker
runs nothing before a master has given it a run.

One file per report (written to a temporary name, fsync'd, renamed, directory fsync'd), so a
report that ``put`` returned for survives kill -9 and power loss, and ``ack`` is one unlink.
A file (``<key>.rpf``) starts with its run and fence in the clear, authenticated with the
report: a restarted worker claims those runs in its first hello, before any master has
handed it the keys to read the rest. (Found by the failover probe of session 27: with the
fence inside the ciphertext only, the hello claimed nothing, the masters gave the run to a
new driver at once, and the replayed report, now fenced out, was lost: its task ran again.)
Files of the earlier format (``<key>.rep``, the fence encrypted) are still read once keys
arrive.
On every (re)connect the worker replays ``pending()`` in the order they were written; the
master applies a report at most once (keyed by run, task and attempt), so replays are safe.

A report the disk cannot take (full, read-only, an I/O error) is kept in memory instead and
said once in the log: it is sent and replayed as any other, and lost only if the worker
stops before a master acknowledges it (the master then runs that task again). Raising
instead would lose it at once: the driver has handed it over and goes on. Each later
``put`` tries to write the kept reports to disk again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import msgpack
from cryptography.exceptions import InvalidTag

from kiok.errors import KiokError
from kiok.protocol.fields import ID_MAX, INT_MAX
from kiok.security.kms import Cipher, Keyring

log = logging.getLogger(__name__)

_KEY_NAME = "joblog-encryption"
#: A report file: its key, ``.rpf``; the earlier format's ``.rep``.
_SUFFIX = ".rpf"
_LEGACY_SUFFIX = ".rep"
#: The clear header's length, before it (2 bytes, big-endian).
_HEADER_LENGTH = 2
#: A report file's key: its name before the suffix.
_KEY = re.compile(r"[0-9]+")


class Outbox:
    def __init__(self, directory: Path) -> None:
        self._cipher: Cipher | None = None
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self._dir, 0o700)
        #: key -> (run, term, epoch) of the reports known to be waiting (``held_runs``).
        self._fences: dict[int, tuple[str, int, int]] = {}
        existing = [key for key, _ in self._files()]
        #: Files whose run and fence are not known until keys arrive (the earlier format, or a
        #: header that does not read): the first hello says it holds more runs than it names.
        self.unknown_fences = 0
        for key, path in self._files():
            fence = _read_fence(path) if path.suffix == _SUFFIX else None
            if fence is None:
                self.unknown_fences += 1
            else:
                self._fences[key] = fence
        self._seq = max(existing, default=0)
        #: Entries up to this key were written by an earlier process.
        self.recovered = self._seq
        #: key -> record of the reports the disk could not take, oldest first.
        self._unwritten: dict[int, dict[str, Any]] = {}
        self._disk_refused = False

    def set_keys(self, ring: Keyring) -> None:
        """The keys from the master's WELCOME (every version: older files still read)."""
        self._cipher = Cipher(ring, _KEY_NAME)

    def put(self, record: dict[str, Any]) -> int:
        """Store ``record`` durably if the disk takes it (else in memory); return its key."""
        if self._cipher is None:
            raise KiokError("the outbox has no key yet: no master has welcomed this worker")
        self._seq += 1
        key = self._seq
        self._fences[key] = _fence_of(record)
        self._unwritten[key] = record
        self._write_unwritten()
        return key

    def _write_unwritten(self) -> None:
        """Write the reports kept in memory, oldest first, until the disk refuses one."""
        for key, record in list(self._unwritten.items()):
            try:
                self._write(key, record)
            except OSError as e:
                if not self._disk_refused:
                    log.error(
                        "the worker's outbox cannot write to %s (%s): task reports are kept in "
                        "memory until a master acknowledges them; they are lost if the worker "
                        "stops before that",
                        self._dir,
                        e.strerror or e,
                    )
                self._disk_refused = True
                return
            del self._unwritten[key]
        if self._disk_refused:
            self._disk_refused = False
            log.warning("the worker's outbox writes to %s again", self._dir)

    def _files(self) -> list[tuple[int, Path]]:
        """The report files here, by key, oldest first."""
        found = [
            (int(p.stem), p)
            for suffix in (_SUFFIX, _LEGACY_SUFFIX)
            for p in self._dir.glob(f"*{suffix}")
            if _KEY.fullmatch(p.stem)  # ASCII digits ("²" is a digit to isdigit, not to int)
        ]
        return sorted(found, key=lambda entry: entry[0])

    def _write(self, key: int, record: dict[str, Any]) -> None:
        assert self._cipher is not None
        final = self._dir / f"{key:016d}{_SUFFIX}"
        tmp = final.with_suffix(".tmp")
        header = msgpack.packb(list(_fence_of(record)), use_bin_type=True)
        sealed = self._cipher.encrypt(msgpack.packb(record, use_bin_type=True), final.name.encode() + header)
        data = len(header).to_bytes(_HEADER_LENGTH, "big") + header + sealed
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(data)
                while view:  # a full disk may take part of it first
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        try:
            dfd = os.open(self._dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            # Not durable: the report stays in memory only, not also in a file that a later
            # ``pending`` would list a second time (and ``ack`` of the memory copy not delete).
            with contextlib.suppress(OSError):
                final.unlink()
            raise

    def ack(self, key: int) -> None:
        self._fences.pop(key, None)
        if self._unwritten.pop(key, None) is not None:
            return
        for suffix in (_SUFFIX, _LEGACY_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._dir / f"{key:016d}{suffix}")

    def pending(self) -> list[tuple[int, dict[str, Any]]]:
        """Every unacknowledged report, oldest first. A file these keys cannot open (junk, or
        written for another cluster) is dropped with a warning: the master re-runs what it
        never heard about."""
        if self._cipher is None:
            return []
        out = []
        for key, path in self._files():
            try:
                raw = path.read_bytes()
            except OSError as e:  # a directory, a dangling link: nothing of the worker's
                log.warning("skipping outbox entry %s: %s", path.name, e.strerror or e)
                self._fences.pop(key, None)
                continue
            try:
                associated = path.name.encode()
                if path.suffix == _SUFFIX:
                    size = int.from_bytes(raw[:_HEADER_LENGTH], "big")
                    header = raw[_HEADER_LENGTH : _HEADER_LENGTH + size]
                    associated += header
                    raw = raw[_HEADER_LENGTH + size :]
                plain = self._cipher.decrypt(raw, associated)
                record = msgpack.unpackb(plain, raw=False)
                self._fences[key] = _fence_of(record)
                out.append((key, record))
            except (ValueError, KiokError, InvalidTag, msgpack.UnpackException) as e:
                log.warning("dropping unreadable outbox entry %s: %s", path.name, e or type(e).__name__)
                path.unlink(missing_ok=True)
                self._fences.pop(key, None)  # its clear header claimed a run it cannot prove
        self.unknown_fences = 0  # each is now known, or dropped
        out.extend(self._unwritten.items())
        return sorted(out, key=lambda entry: entry[0])

    def held_runs(self) -> dict[str, tuple[int, int]]:
        """Runs with a terminal report waiting here, each with the newest fence it was
        written under. Until the masters acknowledge it, the run's outcome is known only to
        this worker: it still holds the run (``MasterClient`` claims it), so a new leader does
        not give the run to another driver, which would run its finished tasks again."""
        held: dict[str, tuple[int, int]] = {}
        for run_id, term, epoch in self._fences.values():
            held[run_id] = max(held.get(run_id, (term, epoch)), (term, epoch))
        return held


def _fence_of(record: dict[str, Any]) -> tuple[str, int, int]:
    return str(record.get("run")), int(record.get("term") or 0), int(record.get("epoch") or 0)


def _read_fence(path: Path) -> tuple[str, int, int] | None:
    """The run and fence in a report file's clear header; None when it cannot be read (the
    file is then judged once keys arrive: ``pending`` drops what does not authenticate)."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(_HEADER_LENGTH), "big")
            run, term, epoch = msgpack.unpackb(f.read(size), raw=False)
    except (OSError, ValueError, TypeError, msgpack.UnpackException):
        return None
    # What a hello's claim may carry (``Claim.from_wire``): a master refuses a whole hello over
    # one it cannot take, and the worker would never be welcomed (found by the re-probe).
    if not (isinstance(run, str) and 0 < len(run) <= ID_MAX and type(term) is int and type(epoch) is int):
        return None
    if not (0 <= term <= INT_MAX and 0 <= epoch <= INT_MAX):
        return None
    return run, term, epoch
