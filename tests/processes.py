"""Finding host processes by their command line, for tests that must see a task's process
die (or live on) from outside its pid namespace."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def processes_with(argv: list[str]) -> list[int]:
    """The host pids of the processes whose command line is exactly ``argv`` (a zombie's is
    empty: it is not listed)."""
    wanted = b"".join(arg.encode() + b"\0" for arg in argv)
    found = []
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError):
            if entry.isdigit() and Path(f"/proc/{entry}/cmdline").read_bytes() == wanted:
                found.append(int(entry))
    return found
