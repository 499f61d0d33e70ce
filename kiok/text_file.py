"""The one-line text files kiok reads at start (a master key file, a worker's id file): one
place that turns what makes such a file unusable into one line naming the file
(``InvalidInput``), never a traceback and never the file's content."""

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
