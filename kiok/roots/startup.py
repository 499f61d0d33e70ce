"""What a process claims before it announces or changes anything: its data directory (an
exclusive lock) and its listening ports (bound sockets, handed to the servers later), the
ports first, so that a start refused for one writes nothing (``claim``).

A claim that fails is a ``Conflict`` whose message is the one line ``kiok`` prints: another
process holds the directory or the port. The lock is ``flock`` on ``<data>/kiok.lock``, so
the kernel drops it when its holder dies (kill -9 included) and a restart never finds a
stale lock."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Sequence
from pathlib import Path

from kiok.errors import Conflict

LOCK_FILE = "kiok.lock"
BACKLOG = 2048


class DataDirLock:
    """Held from ``lock_data_dir`` until ``release`` (or the process ends)."""

    def __init__(self, fd: int, data: Path) -> None:
        self._fd = fd
        #: The locked directory.
        self.data = data

    def lock_file_moved(self) -> bool:
        """Whether ``<data>/kiok.lock`` is no longer the file this lock holds (removed, or
        another one in its place: the directory was removed or replaced). One ``stat``."""
        try:
            found = os.stat(self.data / LOCK_FILE)
        except FileNotFoundError:
            return True
        held = os.fstat(self._fd)
        return (found.st_dev, found.st_ino) != (held.st_dev, held.st_ino)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = -1


def claim(data: Path, ports: Sequence[tuple[str, int, str]]) -> tuple[DataDirLock, list[socket.socket]]:
    """The data directory ``data`` (made with mode 0700 if new, and locked) and a listening
    socket for each ``(host, port, setting)`` of ``ports``, claimed so that a refused start
    leaves nothing behind: a directory another process holds is said first (a second start of
    the same kiok finds its ports taken too, and the directory says more), then every port is
    bound, and only then is the directory made and locked. A start refused for a port has
    made no directory and written no file in one."""
    refuse_if_in_use(data)
    listeners: list[socket.socket] = []
    try:
        for host, port, setting in ports:
            listeners.append(listen_socket(host, port, setting))
        data.mkdir(parents=True, exist_ok=True)
        data.chmod(0o700)
        return lock_data_dir(data), listeners
    except BaseException:
        for sock in listeners:
            sock.close()
        raise


def refuse_if_in_use(data: Path) -> None:
    """``Conflict``, as ``lock_data_dir``'s, when another process holds ``data``'s lock;
    nothing is made or written (no lock file: no holder)."""
    try:
        fd = os.open(data / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # a new directory, or one this process cannot read: lock_data_dir will say
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # dropped as the descriptor closes
    except BlockingIOError:
        raise _in_use(data, fd) from None
    finally:
        os.close(fd)


def lock_data_dir(data: Path) -> DataDirLock:
    """Lock ``data`` (which exists) for this process; ``Conflict`` naming the directory and
    the holder's pid when another process has it. Not inherited by child processes."""
    fd = os.open(data / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        error = _in_use(data, fd)
        os.close(fd)
        raise error from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DataDirLock(fd, data)


def _in_use(data: Path, fd: int) -> Conflict:
    """The refusal for ``data``, locked by another process whose pid ``fd`` (its lock file) holds."""
    holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
    by = f" (pid {holder})" if holder.isdigit() else ""
    return Conflict(f"data directory {data} is in use by another kiok process{by}")


def listen_socket(host: str, port: int, setting: str) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening (connections wait in the backlog
    until a server takes the socket); ``Conflict`` naming the address and ``setting`` when
    the port is taken or cannot be bound."""
    where = f"{host}:{port} ({setting})"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as e:
        raise Conflict(f"cannot listen on {where}: {e.strerror or e}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise Conflict(f"{where} is in use by another process") from None
        raise Conflict(f"cannot listen on {where}: {e.strerror or e}") from None
    return sock
