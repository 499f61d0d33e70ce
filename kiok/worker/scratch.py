"""What attempts leave behind besides their processes, and how a task spawner removes it:
an attempt's working directory (``empty_dir``, ``empty_steps``) and, for a spawner in
namespaces of its own, its private ``/tmp``, ``/var/tmp``, ``/dev/shm`` and System V / POSIX
IPC (``private_scratch``, ``Scratch``).

Why here and not in the spawner's loop: what is removed was made by a task, so every step
assumes the worst of it (trees deeper than any recursion, directories it took its own
permissions off, links, millions of names), and that care is easier to read and to test
apart from the loop that schedules it in slices.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
from collections.abc import Callable, Iterator

from kiok.worker import procfs

#: Set by the worker (``Isolation.spawner_env``) for a spawner in a pid and mount namespace of
#: its own: what to make private there, ``tmp`` and (in an IPC namespace too) ``ipc``, comma
#: separated. Removed from the environment before any task could inherit it.
PRIVATE_ENV = "KIOK_SPAWNER_PRIVATE"
#: How a directory a task may have touched is opened: never through a link.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def empty_dir(directory: str) -> None:
    """Remove what an attempt left in its directory and give the directory its mode (0700)
    back, as ``empty_steps`` walks it (any depth, links never followed, two descriptors at
    most). What cannot be removed stays (a process of the task's still at work)."""
    try:
        top = _open_dir(directory, None)
    except OSError:
        return  # gone: the next attempt makes it again
    try:
        for _ in empty_steps(top, frozenset()):
            pass
    finally:
        os.close(top)


def _open_dir(path: str, dir_fd: int | None) -> int:
    """The directory ``path`` (never through a link), opened and made 0700 again. One the
    task took the read permission off is given it back first: by name, as the task's user
    (root, which never gets here, is refused nothing), so nothing it could not do itself."""
    try:
        fd = os.open(path, DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        os.chmod(path, 0o700, dir_fd=dir_fd)
        fd = os.open(path, DIR_FLAGS, dir_fd=dir_fd)
    try:
        os.fchmod(fd, 0o700)
    except OSError:
        os.close(fd)
        raise
    return fd


def _move(name: str, fd: int, top: int, names: Iterator[int]) -> str:
    """Move directory ``name`` from ``fd`` into ``top``, under a name of its own there (a
    directory moves only with its write permission: given back, as in ``_open_dir``)."""
    while True:
        new = f".kiok-emptied-{next(names)}"
        try:
            os.rename(name, new, src_dir_fd=fd, dst_dir_fd=top)
            return new
        except PermissionError:
            os.chmod(name, 0o700, dir_fd=fd)
            os.rename(name, new, src_dir_fd=fd, dst_dir_fd=top)
            return new
        except OSError as e:  # the name is taken (not by an empty directory: that is replaced)
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR, errno.EBUSY):
                raise


def empty_steps(top: int, keep: frozenset[str]) -> Iterator[None]:
    """Remove what directory ``top`` holds but the entries named in ``keep``, one step (yield)
    per entry: ``empty_dir`` runs it through at once, ``Scratch`` in slices, for a directory
    that may hold millions of entries. ``top`` is an open descriptor, left open and with its
    mode as it is (a shared temporary directory's 1777, root's: ``empty_dir`` sets its own).

    A task may have made anything there: trees deeper than any recursion or path allows,
    directories it took its own permissions off, links (never followed). So nothing here
    recurses or builds paths: each directory met has its other entries removed and its
    subdirectories moved up into ``top``, to be emptied in their turn; descriptors are two at
    most. Directories are read as they are emptied, never listed whole first (a million
    names would be ~100 MB): an entry made meanwhile may be removed too, or stay."""
    names = itertools.count()
    todo: list[str] = []
    with os.scandir(top) as scan:
        for entry in scan:
            if entry.name in keep:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    todo.append(entry.name)
                else:
                    os.unlink(entry.name, dir_fd=top)
            except OSError:
                pass
            yield
    while todo:
        name = todo.pop()
        try:
            fd = _open_dir(name, top)
        except OSError:
            continue
        try:
            with os.scandir(fd) as scan:
                for entry in scan:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            todo.append(_move(entry.name, fd, top, names))
                        else:
                            os.unlink(entry.name, dir_fd=fd)
                    except OSError:
                        pass
                    yield
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.rmdir(name, dir_fd=top)
        yield


#: The temporary directories a spawner in a mount namespace of its own mounts afresh.
_SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
#: The most each may hold (of the machine's memory): a tmpfs's own default is half, and what
#: a task leaves there stays until the spawner is next idle.
_SCRATCH_SIZE = "25%"
#: Where POSIX message queues are listed, when the host has it; mounted afresh in an IPC
#: namespace, so that the spawner can find (and remove) those its tasks made.
_MQUEUE_DIR = "/dev/mqueue"
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_BIND, _MS_REC = 2, 4, 8, 32, 4096, 16384
_IPC_RMID = 0
#: System V IPC by kind: its /proc list; its ``*ctl`` call (``semctl`` takes a semaphore
#: number before the command); the ``*_INFO`` command that counts the objects in use, and
#: where the count is in what it fills (an int's index: ``used_ids``, ``semusz``, ``msgpool``).
_SYSV = (("shm", "shmctl", 14, 0), ("sem", "semctl", 19, 7), ("msg", "msgctl", 12, 0))


class Scratch:
    """What tasks of one spawner share and could leave for later attempts, other than their
    working directories: its private temporary directories (open descriptors, each with the
    names of what was kept in it from the host's, ``private_scratch``) and, in an IPC
    namespace of its own, System V IPC (``sysv``: the /proc lists of its shared memory,
    semaphores and message queues, opened, with calls that count and remove them). All of it
    belongs to the tasks' users; with attempt users, it is emptied as root (no task runs then)."""

    def __init__(
        self,
        dirs: list[tuple[int, frozenset[str]]],
        sysv: list[tuple[int, Callable[[], int], Callable[[int], int]]],
    ) -> None:
        self._dirs = dirs
        self._sysv = sysv
        #: Each directory as it was once last emptied (``_looks``).
        self._emptied: list[tuple[int, int, int, int] | None] = [_looks(fd) for fd, _ in dirs]

    def emptying(self) -> Iterator[None]:
        """Remove everything tasks left, one step per object. When there is nothing: an
        ``fstat`` per directory and a count per kind of IPC object, no process started."""
        for index, (fd, keep) in enumerate(self._dirs):
            if _looks(fd) == self._emptied[index]:
                continue
            yield from empty_steps(fd, keep)
            with os.scandir(fd) as scan:  # what could not be removed is looked at each time
                left = any(entry.name not in keep for entry in scan)
            self._emptied[index] = None if left else _looks(fd)
        for fd, in_use, remove in self._sysv:
            if not in_use():
                continue
            for line in procfs.read_all(fd).splitlines()[1:]:  # a header, then: key id ...
                fields = line.split()
                if len(fields) > 1 and fields[1].isdigit():
                    remove(int(fields[1]))
                    yield


def _looks(fd: int) -> tuple[int, int, int, int]:
    """What tells whether directory ``fd`` (a tmpfs or mqueue root) has had an entry added
    since it last looked so, without reading it (its kept entries may be hundreds): its size
    counts its entries (20 each), and its modification and change times move with each one
    added or removed (a task may set them to now, never back). Below it, nothing can have
    changed without a new entry in it: nothing was below it but the kept directories."""
    st = os.fstat(fd)
    return st.st_size, st.st_nlink, st.st_mtime_ns, st.st_ctime_ns


def private_scratch(ipc: bool, uid: int, gid: int) -> Scratch:
    """Mount a fresh tmpfs (mode 1777, nosuid, nodev) on each of ``/tmp``, ``/var/tmp`` and
    ``/dev/shm`` that exists, and (``ipc``: in an IPC namespace of its own) a fresh mqueue
    file system on ``/dev/mqueue``; open what ``Scratch`` needs. As root, in a mount
    namespace of this spawner's own (nothing here reaches the host's), before it drops.

    The directories root has made in the host's that the task user ``uid``/``gid`` may
    search (kiok's own work root, by default under ``/tmp``; one an operator made for tasks)
    stay where they were: each is bind-mounted back at its path, as it is when the spawner
    starts; tasks cannot make root's. One root made world-writable (``/tmp/.X11-unix``) is
    shared by tasks, as any such directory of the host is. ``OSError`` when a
    mount is refused (the caller says so and goes on with the host's directories)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    dirs: list[tuple[int, frozenset[str]]] = []
    for path in _SCRATCH_DIRS:
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                continue
        except FileNotFoundError:
            continue
        host = os.open(path, DIR_FLAGS)  # still reaches the host's once covered
        try:
            kept = _roots_own(host, uid, gid)
            _mount("tmpfs", path, "tmpfs", _MS_NOSUID | _MS_NODEV, f"mode=1777,size={_SCRATCH_SIZE}")
            for name in kept:
                target = os.path.join(path, name)
                os.mkdir(target, 0o700)
                _mount(f"/proc/self/fd/{host}/{name}", target, None, _MS_BIND | _MS_REC, None)
        finally:
            os.close(host)
        dirs.append((os.open(path, DIR_FLAGS), frozenset(kept)))
    sysv: list[tuple[int, Callable[[], int], Callable[[int], int]]] = []
    if ipc:
        if os.path.isdir(_MQUEUE_DIR):
            _mount("mqueue", _MQUEUE_DIR, "mqueue", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None)
            dirs.append((os.open(_MQUEUE_DIR, DIR_FLAGS), frozenset()))
        for kind, call, info, used_at in _SYSV:
            try:  # absent from a kernel without System V IPC
                listed = os.open(f"/proc/sysvipc/{kind}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            sysv.append((listed, *_sysv_calls(getattr(libc, call), kind == "sem", info, used_at)))
    return Scratch(dirs, sysv)


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    """mount(2); ``OSError`` naming ``target`` when refused."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(
        source.encode(),
        target.encode(),
        None if fstype is None else fstype.encode(),
        ctypes.c_ulong(flags),
        None if data is None else data.encode(),
    ):
        code = ctypes.get_errno()
        raise OSError(code, f"cannot mount a private {target} ({os.strerror(code)})")


def hide_processes() -> None:
    """Remount this namespace's ``/proc`` (``unshare --mount-proc`` made it, for this
    spawner's pid namespace alone) with ``hidepid=2``: a process sees only its own user's
    processes there (root, all). Attempts run as users of their own, so one cannot read
    another's command line (``mysql --password=…``, found by the security probe of
    session 28), nor the spawner's or a template's. Only with attempt users: without them
    every attempt is the task user, whom it would not separate. ``OSError`` when refused."""
    _mount("proc", "/proc", "proc", _MS_REMOUNT | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "hidepid=2")


def _sysv_calls(
    ctl: Callable[..., int], numbered: bool, info: int, used_at: int
) -> tuple[Callable[[], int], Callable[[int], int]]:
    """For one kind of System V IPC object, with its C ``*ctl`` call: how many there are
    (one system call, ~1 µs: reading the /proc list costs ~3; not known counts as some),
    and the removal of one by id (0 once removed)."""
    import ctypes

    filled = (ctypes.c_int * 64)()  # room for any of shm_info, seminfo, msginfo

    def in_use() -> int:
        done = ctl(0, 0, info, filled) if numbered else ctl(0, info, filled)
        return 1 if done < 0 else int(filled[used_at])

    def remove(id_: int) -> int:
        return int(ctl(id_, 0, _IPC_RMID) if numbered else ctl(id_, _IPC_RMID, None))

    return in_use, remove


def _roots_own(host: int, uid: int, gid: int) -> list[str]:
    """The names of the directories in directory ``host`` that belong to this process's user
    (root) and that the user ``uid``/``gid`` may search: to be bind-mounted back, from
    ``host``, once its path is covered. In a sticky directory (``/tmp``) nobody else can
    replace one of root's meanwhile."""
    kept = []
    with os.scandir(host) as scan:
        for entry in scan:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            searchable = st.st_mode & (stat.S_IXGRP if st.st_gid == gid else stat.S_IXOTH)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() != uid and searchable:
                kept.append(entry.name)
    return kept


__all__ = [
    "DIR_FLAGS",
    "PRIVATE_ENV",
    "Scratch",
    "empty_dir",
    "empty_steps",
    "hide_processes",
    "private_scratch",
]
