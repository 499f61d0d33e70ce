"""The one-line text files kiok reads at start (a master key file, a worker's id file): one
place that turns what makes such a file unusable into one line naming the file
(``InvalidInput``), never a traceback and never the file's content; and the one way it writes
a secret one (a worker's credential, its status token)."""

from __future__ import annotations

import os
from pathlib import Path

from kiok.errors import InvalidInput


def read_line(path: str | Path, what: str, *, owner_only: bool = False) -> str:
    """The stripped text of ``path``, which messages call ``what`` (``"the worker id
    file"``). ``owner_only``: refuse a file others than its owner may read (it holds a
    key). Empty when the file is; the caller says what an empty one means."""
    try:
        with open(path, "rb") as f:
            if owner_only:
                mode = os.fstat(f.fileno()).st_mode
                if mode & 0o077:
                    raise InvalidInput(
                        f"{what} {path} is readable by others than its owner "
                        f"(mode {mode & 0o777:o}): chmod 600 it"
                    )
            data = f.read()
    except OSError as e:
        raise InvalidInput(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        return data.decode().strip()
    except UnicodeDecodeError:
        raise InvalidInput(f"{what} {path} is not text") from None


__all__ = ["read_line"]


def write_private(path: Path, text: str) -> None:
    """Save the one line ``text`` to ``path``, mode 0600 (a secret: only kiok's user reads
    it), replacing any older file at once: a reader sees the old line or the new one, never a
    part, and a crash leaves one or the other. A leftover of an earlier crash is removed
    first (it may have other permissions); links are not followed. Raises ``OSError``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
