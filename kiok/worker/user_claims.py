"""Attempt users held host-wide, so that no two workers on one host run attempts as one user.

Attempt users are host users (``<kiok.worker.task.user>-<n>``). Two workers on one host
that both numbered theirs from 1 would run attempts of different runs as the same user,
which could then read and write each other's working directories, or (``user`` isolation,
no pid namespace) be ended as the other worker's leftovers. So a worker *claims* the uids
it runs attempts as: an exclusive ``flock`` on a file per uid, in a directory only root
may write (``CLAIMS``: an attempt user cannot take or hold a claim), kept for as long as
the process lives and let go by the kernel when it exits, however it ends. The task user's
uid (the spawners') is held shared by every worker that runs as it, so no worker can take
it as an attempt user, nor run as one another holds. A worker takes the lowest-numbered
users no other process holds; a second worker on the host gets the next ones, created like
the first when missing. Locks are by uid, as the kernel knows users: two names for one uid
are one user.

A user claimed afresh may still have processes: attempts of a worker that died without
ending them (with ``user`` isolation nothing else did). Its claim is gone with it, so they
are no one's, and are killed (``kill_user_processes``) before any attempt runs as that user
(once its uid is known to be an attempt user's: not root's, nor the task user's). One
process asking again (tests build several workers in one) gets the users it already holds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import stat
from collections.abc import Callable
from pathlib import Path

from kiok.errors import InvalidInput

log = logging.getLogger(__name__)

#: Root's alone: a claim is an open, ``flock``-ed file here per uid.
CLAIMS = Path("/run/kiok/attempt-users")
#: How far past the users asked for a worker looks for free ones (workers on one host).
_MOST_NUMBERS = 65536

#: This process's claims, uid -> the open descriptor holding it (for the process's life).
_held: dict[int, int] = {}


def claim(
    prefix: str,
    count: int,
    uid_of: Callable[[str], int],
    task_ids: tuple[int, int],
    directory: Path = CLAIMS,
) -> list[tuple[str, int]]:
    """``count`` attempt users ``<prefix>-<n>`` (name, uid) this process holds a claim on,
    the lowest numbers free first, for spawners running as ``task_ids`` (uid, gid; held
    shared). ``uid_of`` gives a name's uid (creating the user when missing); the processes
    of a user claimed afresh are killed. ``InvalidInput`` when the directory is not root's
    alone, the task user is another worker's attempt user, a user's uid is root's, the task
    user's or another's of the list, or no free user is left."""
    _check_directory(directory)
    task_uid, gid = task_ids
    if task_uid not in _held and not _take(directory, task_uid, fcntl.LOCK_SH):
        raise InvalidInput(
            f"the task user (uid {task_uid}) is an attempt user of another kiok worker on this "
            "host: give this worker a kiok.worker.task.user of its own"
        )
    found: list[tuple[str, int]] = []
    for n in range(1, _MOST_NUMBERS + 1):
        if len(found) == count:
            break
        name = f"{prefix}-{n}"
        uid = uid_of(name)
        if uid in (0, task_uid) or any(uid == other for _, other in found):
            raise InvalidInput(
                f"the attempt user {name!r} has uid {uid}, which is root's, the task user's or "
                "another attempt user's: give it a uid of its own"
            )
        if uid in _held:
            found.append((name, uid))
        elif _take(directory, uid, fcntl.LOCK_EX):
            try:
                kill_user_processes(uid, gid)  # a dead worker's attempts: no one's now
            except OSError as e:  # kept claimed and unused: no worker runs attempts beside it
                log.warning("attempt user %r is not used: what is left running as it: %s", name, e)
                continue
            found.append((name, uid))
    if len(found) < count:
        raise InvalidInput(
            f"no free attempt user: {prefix}-1 to -{_MOST_NUMBERS} are held by other kiok workers "
            "on this host"
        )
    return found


def _take(directory: Path, uid: int, how: int) -> bool:
    """Claim ``uid`` (``how``: ``LOCK_EX`` or ``LOCK_SH``): False when another process holds
    it the other way (or, exclusive, at all)."""
    path = directory / f"{uid}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise InvalidInput(f"cannot claim uid {uid} for attempts ({path}: {e.strerror})") from None
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise InvalidInput(f"cannot claim uid {uid} for attempts ({path}: {e.strerror})") from None
    _held[uid] = fd
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


def kill_user_processes(uid: int, gid: int) -> None:
    """Kill every process of user ``uid`` (its real or saved user: an attempt user no running
    attempt has), in one sweep: ``kill(-1, SIGKILL)`` sent as that user, which the kernel
    delivers to each of that user's processes while none can fork (one forking meanwhile has
    its fork fail), so no chain of forks outruns it, as it would a search of ``/proc``.

    Sent from a child of this process that becomes the user and executes nothing: no program
    to find (slim images have no ``kill``), and no ``execve``, which the user's process limit
    would refuse to a fork bomb's user (a root process forks past it). Being that user, the
    child can be signalled by what it sweeps: it blocks every signal it can (none reaches
    this process's handlers through it), one that stops or kills it is seen and the sweep
    tried again. ``gid``: the group the child takes (the task user's). ``OSError`` when it
    could not be done (what is left is then not known dead)."""
    for _ in range(_SWEEP_TRIES):
        status = _sweep_once(uid, gid)
        if status == 0:
            return
    raise OSError(f"could not kill the processes of uid {uid} ({_SWEEP_TRIES} tries, last: {status})")


_SWEEP_TRIES = 5


def _sweep_once(uid: int, gid: int) -> int:
    """One sweeping child: its exit code (0: swept; negative: the signal that ended it; 128
    + signal: it was stopped, and killed)."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: system calls only, then _exit
            status = 1
            try:
                os.setgroups([])
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)
                try:
                    os.kill(os.getppid(), 0)
                    status = 2  # still able to signal root: capabilities kept (securebits)
                except PermissionError:
                    with contextlib.suppress(ProcessLookupError):  # none to kill
                        os.kill(-1, signal.SIGKILL)
                    status = 0
            finally:
                os._exit(status)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    _, status = os.waitpid(pid, os.WUNTRACED)
    if os.WIFSTOPPED(status):  # stopped by a process of the user it was sweeping
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return 128 + os.WSTOPSIG(status)
    return os.waitstatus_to_exitcode(status)


__all__ = ["CLAIMS", "claim", "kill_user_processes"]
