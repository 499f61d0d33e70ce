"""Watching a process's data directory: removed or replaced under a running process (an
``rm -rf``, a volume swapped), its stores would write to files nobody can open again, and
the next start would begin on an empty one. A process that sees it stops instead (crash-only:
its supervisor restarts it, and the start says what is wrong)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from kiok.errors import StoreUnavailable
from kiok.roots.startup import DataDirLock

#: How often, in seconds, the data directory is checked: one ``stat`` of the directory and
#: one of its lock file (with an ``fstat`` of the held one) each time, off every request's path.
CHECK_EVERY_S = 2.0


class DataDirWatch:
    """The data directory as the process found it at start (after ``lock_data_dir``)."""

    def __init__(self, lock: DataDirLock) -> None:
        self._lock = lock
        found = os.stat(lock.data)
        self._identity = (found.st_dev, found.st_ino)

    def problem(self) -> str | None:
        """Why the directory is no longer the one this process started with, or None."""
        try:
            found = os.stat(self._lock.data)
            moved = (found.st_dev, found.st_ino) != self._identity or self._lock.lock_file_moved()
        except OSError:  # gone, or no longer reachable: the same for the stores
            moved = True
        if not moved:
            return None
        return (
            f"the data directory {self._lock.data} was removed or replaced while kiok ran: "
            "stopping, nothing more is written; restore it (or a backup) and restart kiok"
        )

    async def run(self, on_lost: Callable[[StoreUnavailable], None] = lambda err: None) -> None:
        """Check every ``CHECK_EVERY_S``; once the directory moved, call ``on_lost`` (which
        fences the stores) and raise its ``StoreUnavailable``. Never returns otherwise."""
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            why = self.problem()
            if why is not None:
                err = StoreUnavailable(why)
                on_lost(err)
                raise err
