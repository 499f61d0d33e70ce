"""Task isolation: keeping task processes away from what kiok holds (its data directory, keys,
credentials, admin socket and its processes' ``/proc`` entries).

Tasks run code from DAGs, so they are untrusted. As root, kiok runs them as an unprivileged
user (``kiok.worker.task.user``, created at start when missing) and, where the kernel allows,
inside a private pid, mount and (where allowed) IPC namespace: the task spawner is started
through ``unshare --pid --fork --mount-proc --ipc``, mounts its private ``/tmp``, ``/var/tmp``
and ``/dev/shm`` (``scratch.private_scratch``), drops to the task user itself once its imports
are done, and every task it starts inherits all of it. Modes, reported as ``taskIsolation``:

    user+pidns  tasks run as the task user, see only their own namespace's processes, and
                have temporary directories (and, with an IPC namespace, System V IPC) that
                the spawner empties whenever it is idle
    user        tasks run as the task user; kiok's processes show in /proc (cmdline only:
                their environment and memory are root's)
    none        tasks run as kiok's own user and can read whatever kiok can (not root, or
                kiok.worker.task.isolation=none); said in one warning at start

``decide`` is the pure choice; ``task_isolation`` and ``prepare_work_root`` carry it out.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kiok.errors import InvalidInput
from kiok.worker import user_claims
from kiok.worker.scratch import PRIVATE_ENV, empty_dir

log = logging.getLogger(__name__)

SETTINGS = ("auto", "user", "none")
#: From weakest to strongest (``/cluster/health`` shows the weakest connected worker's).
MODES = ("none", "user", "user+pidns")
_UNSHARE = ("--pid", "--fork", "--mount-proc", "--kill-child")
#: Added to ``_UNSHARE`` where IPC namespaces may be made (a service manager may forbid them:
#: systemd's ``RestrictNamespaces``): System V IPC objects and POSIX message queues of tasks
#: are then the spawner's namespace's, and removed when it is idle.
_UNSHARE_IPC = "--ipc"
#: Where a system interpreter for python tasks is looked for.
_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class Isolation:
    """How this worker's tasks run; ``uid``/``gid`` are the task user's (-1 for ``none``)."""

    mode: str = "none"
    user: str = ""
    uid: int = -1
    gid: int = -1
    unshare: str = ""
    #: The spawner's namespace is an IPC namespace of its own too (``user+pidns`` only).
    ipc_namespace: bool = False
    #: The attempt users (name, uid): each attempt runs as one no other running attempt has
    #: (``kiok.worker.attempt_ids``), in the task user's group.
    attempt_users: tuple[tuple[str, int], ...] = ()

    @property
    def as_user(self) -> bool:
        return self.mode != "none"

    @property
    def task_uid(self) -> int:
        """The user whose permissions a task has: an attempt user (to kiok's files each is
        in the same class, the task user's group or others), else the task user."""
        return self.attempt_users[0][1] if self.attempt_users else self.uid

    @property
    def pid_namespace(self) -> bool:
        """Task pids the spawner reports are its namespace's: never signal them from outside."""
        return self.mode == "user+pidns"

    def spawner_argv(self, argv: Sequence[str]) -> list[str]:
        """The command that starts the task spawner ``argv`` with this isolation."""
        if not self.as_user:
            return list(argv)
        ids = f"{self.uid}:{self.gid}"  # the spawner drops to these itself
        if self.attempt_users:
            ids += ":" + ",".join(str(uid) for _, uid in self.attempt_users)
        command = [*argv, ids]
        if not self.pid_namespace:
            return command
        ipc = (_UNSHARE_IPC,) if self.ipc_namespace else ()
        return [self.unshare, *_UNSHARE, *ipc, "--", *command]

    def spawner_env(self, env: dict[str, str]) -> dict[str, str]:
        """The task environment as this isolation has it (``HOME`` is set per attempt); in a
        pid namespace, with ``scratch.PRIVATE_ENV`` telling the spawner what of its namespaces
        to make private (it removes the variable before any task could inherit it)."""
        if not self.as_user:
            return env
        env = {**env, "USER": self.user, "LOGNAME": self.user}
        if self.pid_namespace:  # its own mount namespace: a private /tmp stays out of the host's
            env[PRIVATE_ENV] = "tmp,ipc" if self.ipc_namespace else "tmp"
        return env


NO_ISOLATION = Isolation()


def decide(setting: str, euid: int, pid_namespace_works: bool) -> tuple[str, str | None]:
    """The mode for ``kiok.worker.task.isolation`` = ``setting`` in a process with ``euid``,
    and the warning to log (None: nothing to say). ``InvalidInput`` when it cannot be had."""
    if setting not in SETTINGS:
        raise InvalidInput(
            f"kiok.worker.task.isolation must be one of {', '.join(SETTINGS)}, not {setting!r}"
        )
    if setting == "none":
        return "none", (
            "kiok.worker.task.isolation=none: tasks run as kiok's own user and can read its data "
            "directory, keys, credentials and /proc entries"
        )
    if euid != 0:
        if setting == "user":
            raise InvalidInput(
                "kiok.worker.task.isolation=user needs kiok to run as root (it starts tasks as "
                "kiok.worker.task.user); run as root, or set it to auto or none"
            )
        return "none", (
            "task isolation: none (kiok is not root, so tasks run as its own user and can read its "
            "data directory, keys, credentials and /proc entries); run kiok as root to isolate them"
        )
    if pid_namespace_works:
        return "user+pidns", None
    return "user", (
        "task isolation: user only (unshare --pid is not available here): tasks run as "
        "kiok.worker.task.user but can see kiok's processes and their command lines in /proc"
    )


def task_isolation(setting: str, user: str, attempt_users: int = 1) -> Isolation:
    """Decide and prepare this worker's isolation (``kiok.worker.task.isolation``, spawners
    run as ``kiok.worker.task.user``, attempts as ``attempt_users`` users of their own): look
    up or create the users, probe for pid namespaces. Raises ``InvalidInput`` with one line
    when it cannot."""
    euid = os.geteuid()
    unshare = shutil.which("unshare") or ""
    ipc = probe = False
    if setting in ("auto", "user") and euid == 0 and unshare:
        # With an IPC namespace first: one probe in the common case. Without, when a service
        # manager forbids IPC namespaces only: a pid namespace is worth having all the same.
        ipc = probe = _namespaces_work(unshare, (_UNSHARE_IPC,))
        if not probe:
            probe = _namespaces_work(unshare, ())
            if probe:
                log.warning(
                    "task isolation: no IPC namespace (unshare --ipc is refused here): System V "
                    "IPC objects and POSIX message queues tasks make are the host's, and outlive "
                    "their attempts; allow IPC namespaces (systemd: RestrictNamespaces=pid mnt ipc)"
                )
    mode, warning = decide(setting, euid, probe)
    if warning:
        log.warning(warning)
    if mode == "none":
        return NO_ISOLATION
    uid, gid = _task_user(user)
    return Isolation(
        mode,
        user,
        uid,
        gid,
        unshare,
        ipc_namespace=ipc and mode == "user+pidns",
        attempt_users=_attempt_users(user, uid, gid, attempt_users),
    )


def _namespaces_work(unshare: str, extra: tuple[str, ...]) -> bool:
    """Whether the spawner's namespaces (``_UNSHARE`` and ``extra``) can be made here: the
    kernel, a container's seccomp profile or a service manager may refuse any of them."""
    try:
        done = subprocess.run([unshare, *_UNSHARE, *extra, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


#: What a user name can be at all (POSIX's portable characters; useradd takes fewer).
_USER_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?")
#: The longest name useradd makes.
_USERADD_MAX = 32


def task_user_problem(name: str) -> str | None:
    """Why ``kiok.worker.task.user`` cannot name a user, on the setting alone (``kiok config
    show`` says it as the start does), or None."""
    if not name:
        return "kiok.worker.task.user is empty: name the user tasks run as"
    if not _USER_NAME.fullmatch(name) or name.isdigit() or name in (".", ".."):
        return (
            f"kiok.worker.task.user {name!r} is not a user name (letters, digits, '_', '.' and '-', "
            "not starting with '-', not all digits)"
        )
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if len(name) > _USERADD_MAX:  # made at start: useradd takes no longer name
            return f"kiok.worker.task.user {name!r} is longer than {_USERADD_MAX} characters"
        return None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        return f"kiok.worker.task.user {name!r} is root or in group root: name an unprivileged user"
    return None


def _task_user(name: str) -> tuple[int, int]:
    """The task user's uid and gid, creating the user (a system user without a home or a
    login shell) when it does not exist."""
    problem = task_user_problem(name)
    if problem:
        raise InvalidInput(problem)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = _create_user(name)
    return entry.pw_uid, entry.pw_gid


def _attempt_users(user: str, uid: int, gid: int, count: int) -> tuple[tuple[str, int], ...]:
    """``count`` attempt users ``<user>-<n>`` (name, uid) no other worker on this host holds
    (``user_claims``, which refuses one that is root, the task user, or another's uid twice
    over), the lowest numbers first, created in the task user's group when missing."""
    return tuple(user_claims.claim(user, count, functools.partial(_attempt_uid, gid=gid), (uid, gid)))


def _attempt_uid(name: str, gid: int) -> int:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return _create_user(name, group=gid).pw_uid


def _create_user(name: str, group: int | None = None) -> pwd.struct_passwd:
    """Create system user ``name`` (no home, no login shell), in a group of its own or
    ``group``."""
    command = ["useradd", "--system", "--no-create-home"]
    command += ["--user-group"] if group is None else ["--no-user-group", "--gid", str(group)]
    command += ["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        why = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    except (OSError, subprocess.TimeoutExpired) as e:
        why = str(e)
    try:
        entry = pwd.getpwnam(name)  # also when another kiok process created it meanwhile
    except KeyError:
        raise InvalidInput(
            f"cannot create the task user {name!r} ({why}); create it, or set kiok.worker.task.user"
        ) from None
    log.info("created the task user %r (uid %d)", name, entry.pw_uid)
    return entry


def unsearchable(path: str | Path, uid: int, gid: int) -> Path | None:
    """The first directory on the way to ``path`` (its symbolic links followed too) that the
    user ``uid``/``gid`` without supplementary groups may not search; None when every one is
    searchable (or missing: kiok makes those searchable)."""
    candidates = [Path(os.path.abspath(path)), Path(os.path.realpath(path))]
    for target in candidates:
        for directory in reversed(target.parents):
            try:
                st = directory.stat()
            except FileNotFoundError:
                break
            except OSError:
                return directory
            if not _may(st, uid, gid, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
                return directory
    return None


def readable_by(path: str | Path, uid: int, gid: int) -> bool:
    """Whether the user ``uid``/``gid`` without supplementary groups may read file ``path``
    (every directory on the way searchable, the file readable by its class)."""
    if unsearchable(path, uid, gid) is not None:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    return _may(st, uid, gid, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)


def runnable_by(program: str, uid: int, gid: int) -> str | None:
    """Why the user ``uid``/``gid`` cannot run ``program`` (None: it can)."""
    found = program if "/" in program else shutil.which(program)
    if found is None:
        return f"{program} is not on PATH"
    blocked = unsearchable(found, uid, gid)
    if blocked is not None:
        return f"{blocked} is not searchable by it"
    try:
        st = os.stat(found)
    except OSError as e:
        return str(e)
    if not _may(st, uid, gid, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
        return f"{found} is not executable by it"
    return None


def python_for_tasks(configured: str, own: str, isolation: Isolation) -> str:
    """The interpreter python tasks run: ``kiok.python.path`` (``configured``), else kiok's
    own. Isolated tasks may be unable to run kiok's own (a virtualenv under a 0700 home):
    then the first ``python3`` on the standard PATH that they can run, said in one line.
    When they can run neither, or not the configured one, one warning says python tasks
    will fail."""
    python = configured or own
    if not isolation.as_user:
        return python
    why = runnable_by(python, isolation.task_uid, isolation.gid)
    if why is None:
        return python
    if not configured:
        fallback = shutil.which("python3", path=_SYSTEM_PATH)
        if fallback is not None and runnable_by(fallback, isolation.task_uid, isolation.gid) is None:
            log.info(
                "python tasks run %s: the task user %s cannot run kiok's own interpreter %s (%s)",
                fallback,
                isolation.user,
                python,
                why,
            )
            return fallback
    log.warning(
        "python tasks will fail: the task user %s cannot run %s (%s); set kiok.python.path to an "
        "interpreter it can run",
        isolation.user,
        python,
        why,
    )
    return python


def _may(st: os.stat_result, uid: int, gid: int, user_bit: int, group_bit: int, other_bit: int) -> bool:
    """The kernel's mode check for one class: owner, else group, else others (no ACLs)."""
    if st.st_uid == uid:
        return bool(st.st_mode & user_bit)
    if st.st_gid == gid:
        return bool(st.st_mode & group_bit)
    return bool(st.st_mode & other_bit)


def prepare_work_root(configured: str, data_dir: Path, worker_id: str, isolation: Isolation) -> Path:
    """The directory attempts get their working directories in, created if missing.

    Without isolation: ``kiok.worker.work.dir`` or ``<data>/work``. With it, the data
    directory (0700) is out of the task user's reach, so the default is a new directory of
    this process's own, ``<temp dir>/kiok-work-<worker id>-<random>`` (nobody can have put
    anything there first; the worker removes it when it stops). The directory belongs to
    kiok (never to the task user, who could otherwise swap it under kiok), mode 0711, and
    every directory on the way must be searchable by the task user; anything else (a
    symbolic link, another owner) is refused.

    A worker that did not stop cleanly (killed, crashed) leaves its root behind, holding what
    its running attempts had written, owned by attempt users that a later worker claims
    again, of any id (``user_claims``): the default roots of dead workers (not locked:
    ``_hold``) are removed first. Sweeping and making this root are one step under a host-wide
    lock, so a worker starting alongside never takes a root made but not yet held for dead."""
    if not isolation.as_user:
        root = Path(configured or data_dir / "work")
        root.mkdir(parents=True, exist_ok=True)
        return root
    if configured:
        root = Path(os.path.abspath(configured))
        with _roots_lock():
            _remove_dead_roots()
    else:
        with _roots_lock():
            _remove_dead_roots()
            root = Path(tempfile.mkdtemp(prefix=f"{_ROOT_PREFIX}{worker_id}-"))
            _hold(root)
    what = f"the work directory {root} (kiok.worker.work.dir)"
    blocked = unsearchable(root, isolation.task_uid, isolation.gid)  # the way to it; it is ours
    if blocked is not None:
        raise InvalidInput(
            f"{what} is out of reach of the task user {isolation.user}: {blocked} is not searchable by it"
        )
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(root, 0o711)
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as e:
        raise InvalidInput(f"{what} cannot be used: {e.strerror} (is it a symbolic link?)") from None
    try:
        owner = os.fstat(fd).st_uid
        if owner != os.geteuid():
            raise InvalidInput(f"{what} belongs to uid {owner}, not to kiok: remove it or choose another")
        os.fchmod(fd, 0o711)
    finally:
        os.close(fd)
    if configured:
        with _roots_lock():
            _sweep_configured_root(root, isolation.user)
    return root


def _sweep_configured_root(root: Path, task_user: str) -> None:
    """Remove what dead workers' attempts left in a configured work root (``<pid>.<n>``
    directories, owned by attempt users a later worker claims again: found by the security
    probe of session 27), then hold the root (``flock``, shared) for this process's life.
    Alone on it (an exclusive lock taken), every attempt directory is a dead worker's; with
    live workers sharing it, those of processes that no longer exist are. An attempt
    directory is a directory of that name owned by the task user or one of its attempt users
    (``<task user>-<n>``): nothing else there is touched (a ``1.0`` of the operator's is not
    one: the re-probe of session 27)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        alone = True
    except OSError:
        alone = False
    for name in os.listdir(root):
        match = _ATTEMPT_DIR.fullmatch(name)
        if match is None:
            continue
        pid = int(match[1])
        if not alone and (pid == os.getpid() or _alive(pid)):
            continue
        path = os.path.join(root, name)
        if not _attempts_directory(path, task_user):
            continue
        try:
            empty_dir(path)  # never through a link a task made, at any depth
            os.rmdir(path)
        except OSError as e:
            log.warning("cannot remove %s, left by a worker that did not stop cleanly: %s", path, e.strerror)
        else:
            log.info("removed %s, left by a worker that did not stop cleanly", path)
    fcntl.flock(fd, fcntl.LOCK_SH)
    _HELD.append(fd)


def _attempts_directory(path: str, task_user: str) -> bool:
    try:
        st = os.lstat(path)
        owner = pwd.getpwuid(st.st_uid).pw_name
    except (OSError, KeyError):
        return False
    return stat.S_ISDIR(st.st_mode) and (owner == task_user or owner.startswith(f"{task_user}-"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: A temporary work root is named ``<this><worker id>-<random>``.
_ROOT_PREFIX = "kiok-work-"
#: Where dead workers' temporary roots are looked for: the temp directory, and the usual ones
#: (a worker started with another ``TMPDIR`` made its root elsewhere).
_TEMP_DIRS = ("/tmp", "/var/tmp")
#: An attempt's working directory: ``<worker pid>.<n>`` (``WorkDirs``).
_ATTEMPT_DIR = re.compile(r"(\d+)\.\d+")
#: Held while a worker sweeps dead roots and makes its own; root's alone, as the claims are.
ROOTS_LOCK = user_claims.CLAIMS.parent / "work-roots.lock"

#: This process's temporary work roots, each open and locked (``flock``) for as long as it
#: lives: how a later worker tells a dead worker's root (unlocked) from a live one's.
_HELD: list[int] = []
#: The random part of a ``tempfile.mkdtemp`` name.
_TEMP_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def _hold(root: Path) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _HELD.append(fd)


@contextlib.contextmanager
def _roots_lock() -> Iterator[None]:
    ROOTS_LOCK.parent.mkdir(0o755, parents=True, exist_ok=True)
    fd = os.open(ROOTS_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_dead_roots() -> None:
    """Remove the temporary work roots (``<_ROOT_PREFIX><worker id>-<random>``) that belong
    to this user and that no live process holds (``_hold``): their workers, of any id, died
    without removing them."""
    for temp in dict.fromkeys((tempfile.gettempdir(), *_TEMP_DIRS)):
        _remove_dead_roots_in(temp)


def _remove_dead_roots_in(temp: str) -> None:
    try:
        names = os.listdir(temp)
    except OSError:
        return
    for name in names:
        rest = name[len(_ROOT_PREFIX) :]
        if (
            not name.startswith(_ROOT_PREFIX)
            or len(rest) < 10
            or rest[-9] != "-"
            or not set(rest[-8:]) <= _TEMP_CHARS
        ):
            continue
        path = os.path.join(temp, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if os.fstat(fd).st_uid != os.geteuid():
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live worker's
            empty_dir(path)  # first made 0700; never through a link a task made, at any depth
            try:
                os.rmdir(path)
            except OSError as e:
                log.warning("cannot remove %s, a dead worker's work directory: %s", path, e.strerror)
            else:
                log.info("removed %s, the work directory of a worker that did not stop cleanly", path)
        finally:
            os.close(fd)


__all__ = [
    "MODES",
    "NO_ISOLATION",
    "Isolation",
    "decide",
    "prepare_work_root",
    "python_for_tasks",
    "readable_by",
    "runnable_by",
    "task_isolation",
    "unsearchable",
]
