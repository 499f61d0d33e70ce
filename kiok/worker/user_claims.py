"""Attempt users held host-wide, so that no two workers on one host run attempts as one user.

Attempt users are host users (``<kiok.worker.task.user>-<n>``). Two workers on one host
that both numbered theirs from 1 would run attempts of different runs as the same user,
which could then read and write each other's working directories, or (``user`` isolation,
no pid namespace) be ended as the other worker's leftovers. So a worker *claims* each user
it runs attempts as: an exclusive ``flock`` on a file of that user's, in a directory only
root may write (``CLAIMS``: an attempt user cannot take or hold a claim), kept for as long
as the process lives, and let go by the kernel when it exits, however it ends. A worker
takes the lowest-numbered users no other process holds; a second worker on the host gets
the next ones, created like the first when missing.

A user claimed afresh may still have processes: attempts of a worker that died without
ending them (with ``user`` isolation nothing else did). Its claim is gone with it, so they
are no one's, and are killed before any attempt runs as that user. One process asking
again (tests build several workers in one) gets the users it already holds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import stat
from collections.abc import Callable
from pathlib import Path

from kiok.errors import InvalidInput
from kiok.worker.spawner import real_uid

#: Root's alone: a claim is an open, ``flock``-ed file here per attempt user.
CLAIMS = Path("/run/kiok/attempt-users")
#: How far past the users asked for a worker looks for free ones (workers on one host).
_MOST_NUMBERS = 65536

#: This process's claims, name -> the open descriptor holding it (for the process's life).
_held: dict[str, int] = {}


def claim(
    prefix: str, count: int, uid_of: Callable[[str], int], directory: Path = CLAIMS
) -> list[tuple[str, int]]:
    """``count`` attempt users ``<prefix>-<n>`` (name, uid) this process holds a claim on,
    the lowest numbers free first. ``uid_of`` gives a name's uid (creating the user when
    missing); the processes of a user claimed afresh are killed. ``InvalidInput`` when the
    directory is not root's alone or no free user is left."""
    _check_directory(directory)
    found: list[tuple[str, int]] = []
    for n in range(1, _MOST_NUMBERS + 1):
        if len(found) == count:
            return found
        name = f"{prefix}-{n}"
        if name in _held:
            found.append((name, uid_of(name)))
        elif _take(directory / f"{name}.lock", name):
            uid = uid_of(name)
            kill_user_processes(uid)  # a dead worker's attempts: no one's now
            found.append((name, uid))
    if len(found) == count:
        return found
    raise InvalidInput(
        f"no free attempt user: {prefix}-1 to -{_MOST_NUMBERS} are held by other kiok workers on this host"
    )


def _take(path: Path, name: str) -> bool:
    """Claim ``name`` through ``path``: False when another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise InvalidInput(f"cannot claim the attempt user {name} ({path}: {e.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise InvalidInput(f"cannot claim the attempt user {name} ({path}: {e.strerror})") from None
    _held[name] = fd
    return True


def _check_directory(directory: Path) -> None:
    """Make ``directory`` (mode 0700) and refuse one that someone but root could change."""
    try:
        with contextlib.suppress(FileExistsError):
            directory.mkdir(0o700, parents=True)
        st = directory.lstat()
    except OSError as e:
        raise InvalidInput(f"cannot make {directory} for attempt users' claims: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise InvalidInput(
            f"{directory} (where kiok workers claim their attempt users) must be a directory "
            "of root's that no one else may write; remove it and start again"
        )


def kill_user_processes(uid: int) -> None:
    """Kill every process whose real user is ``uid`` (an attempt user no running attempt
    has): stopped first, pass after pass until none is left running (a stopped process
    forks no more), then killed."""
    stopped: set[int] = set()
    for _ in range(8):
        found = [pid for pid in _pids() if pid not in stopped and real_uid(pid) == uid]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
            stopped.add(pid)
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


__all__ = ["CLAIMS", "claim", "kill_user_processes"]
