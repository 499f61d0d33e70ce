"""What the worker and its task spawners read of other processes in ``/proc``: children,
state, start time, real user, and the pid behind a pidfd.

One place for it because the spawner (what an ended attempt left behind, a template's
forks) and the worker (a stopped spawner, the attempts under one it ends) ask the same
questions, and each answer has a trap: a command name may hold ``)`` and spaces, a process
may be gone between two reads, and a multi-threaded process's children are listed per thread.
Every function here answers "nothing" (or ``None``, ``-1``, ``"X"``) for a process that is
gone rather than raising.
"""

from __future__ import annotations

import contextlib
import os

#: Seconds per clock tick, the unit of a process's start time in ``/proc/<pid>/stat``.
CLOCK_TICK_S = 1 / os.sysconf("SC_CLK_TCK")
#: Indexes in ``stat_fields`` (the fields after the command name, the state being 0).
STATE, PGRP, START_TIME = 0, 2, 19


#: One read of a /proc file: it gives a page or so at a time whatever is asked (a larger
#: buffer only costs more to allocate).
_READ = 65536


def read_all(fd: int) -> bytes:
    """All of the /proc file open at ``fd``, from its start, produced afresh: read until its
    end, since a list (a process's children, System V objects) may take several reads."""
    chunks = [os.pread(fd, _READ, 0)]
    while chunks[-1]:
        chunks.append(os.pread(fd, _READ, sum(map(len, chunks))))
    return b"".join(chunks)


def read(path: str) -> bytes:
    """All of /proc file ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return read_all(fd)
    finally:
        os.close(fd)


def children(pid: int, *, threads: bool = True) -> list[int]:
    """The children of process ``pid`` (of each of its threads; without ``threads``, of its
    main thread); none when it is gone."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task") if threads else [str(pid)]
    except OSError:
        return found
    for tid in tids:
        with contextlib.suppress(OSError, ValueError):
            found += map(int, read(f"/proc/{pid}/task/{tid}/children").split())
    return found


def stat_fields(pid: int) -> list[bytes]:
    """The fields of ``/proc/<pid>/stat`` after the command name (the state first: see
    ``STATE``, ``PGRP``, ``START_TIME``); empty when the process is gone. The name is
    skipped up to its last ``)``: a process names itself, and may put one in its name."""
    try:
        return read(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return []


def state(pid: int) -> str:
    """The one-letter state of process ``pid`` (``T`` stopped, ``Z`` a zombie, …); ``X``
    (dead) when it is gone."""
    fields = stat_fields(pid)
    return fields[STATE].decode() if fields else "X"


def real_uid(pid: int) -> int | None:
    """The real user id of process ``pid`` (a set-user-ID program keeps it); None when it
    is gone."""
    try:
        status = read(f"/proc/{pid}/status")
        return int(status.split(b"\nUid:", 1)[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None


def pidfd_pid(pidfd: int) -> int:
    """The pid (in this namespace) of the process ``pidfd`` refers to; -1 when it has been
    reaped or cannot be read. A check that a pidfd another process sent is the pid it said."""
    try:
        for line in read(f"/proc/self/fdinfo/{pidfd}").splitlines():
            if line.startswith(b"Pid:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return -1


__all__ = [
    "CLOCK_TICK_S",
    "PGRP",
    "START_TIME",
    "STATE",
    "children",
    "pidfd_pid",
    "read",
    "real_uid",
    "stat_fields",
    "state",
]
