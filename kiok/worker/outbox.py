"""The worker's outbox: terminal task reports kept on disk until a master acknowledges them.

One file per report (written to a temporary name, fsync'd, renamed, directory fsync'd), so a
report that ``put`` returned for survives kill -9 and power loss, and ``ack`` is one unlink.
On every (re)connect the worker replays ``pending()`` in the order they were written; the
master applies a report at most once (keyed by run, task and attempt), so replays are safe.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import msgpack


class Outbox:
    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self._dir, 0o700)
        existing = [int(p.stem) for p in self._dir.glob("*.rep") if p.stem.isdigit()]
        self._seq = max(existing, default=0)

    def put(self, record: dict[str, Any]) -> int:
        """Store ``record`` durably; return its key."""
        self._seq += 1
        key = self._seq
        final = self._dir / f"{key:016d}.rep"
        tmp = final.with_suffix(".tmp")
        data = msgpack.packb(record, use_bin_type=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        dfd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return key

    def ack(self, key: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._dir / f"{key:016d}.rep")

    def pending(self) -> list[tuple[int, dict[str, Any]]]:
        out = []
        for path in sorted(self._dir.glob("*.rep")):
            try:
                out.append((int(path.stem), msgpack.unpackb(path.read_bytes(), raw=False)))
            except (ValueError, msgpack.UnpackException):
                path.unlink(missing_ok=True)  # a torn write from before the rename cannot exist; junk can
        return out
