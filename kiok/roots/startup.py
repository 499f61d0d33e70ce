"""What a process claims before it announces or changes anything: its data directory (an
exclusive lock) and its listening ports (bound sockets, handed to the servers later).

A claim that fails is a ``Conflict`` whose message is the one line ``kiok`` prints: another
process holds the directory or the port. The lock is ``flock`` on ``<data>/kiok.lock``, so
the kernel drops it when its holder dies (kill -9 included) and a restart never finds a
stale lock."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
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


def lock_data_dir(data: Path) -> DataDirLock:
    """Lock ``data`` (which exists) for this process; ``Conflict`` naming the directory and
    the holder's pid when another process has it. Not inherited by child processes."""
    fd = os.open(data / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        by = f" (pid {holder})" if holder.isdigit() else ""
        raise Conflict(f"data directory {data} is in use by another kiok process{by}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DataDirLock(fd, data)


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
