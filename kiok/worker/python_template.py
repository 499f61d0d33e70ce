"""The python task template: a warm interpreter that ``fork()``s one child per python attempt.

This file is a program, not a module kiok imports: the task spawner reads its source at start
(while kiok's files are still readable) and starts it as ``<python> -u /dev/fd/3 4 PRELOAD
[USER]``, the source at descriptor 3 and a ``SOCK_SEQPACKET`` socket to the spawner at
descriptor 4, so it runs under whatever interpreter python tasks use, in the tasks' pid
namespace, with the tasks' environment, as the task user: it holds no secret and nothing of
kiok's. With ``USER`` (attempts run as attempt users of their own) it is started as root and
becomes the task user (``USER``) at once, keeping root as its saved user id only, so that each
child can become its attempt's user for good before it reads its script (``_become_user``):
no task runs as the template's user, so none can signal it or read its memory. It uses the
standard library only (that interpreter need not see kiok).

Why: a new interpreter costs ~25 ms per attempt; a fork of this one, with ``PRELOAD``'s
modules already imported, costs about one. Each child starts from the same clean template, so
nothing one attempt does (a module attribute set, a file left open) reaches the next. The
child for the next attempt is forked ahead (``_Spares``): a fork of an interpreter and the
child's first steps take ~0.5 ms, mostly copying the pages it writes to, which then happens
between attempts rather than while one waits to start.

The template never sees an attempt's data: the spawner sends an attempt id and three
descriptors (the output pipe, the script's memfd, a memfd holding the working directory and
the environment), and only the child reads the memfds. Messages to the spawner, one per
packet: ``R<errors>`` (ready; one line per preload module that failed), ``F<id> <pid>``
(forked; with a pidfd of the child where there are pidfds), ``E<id> <errno> <why>`` (could
not fork), ``X<pid> <wait status>`` (a child ended).
"""

from __future__ import annotations

import array
import atexit
import builtins
import contextlib
import errno
import gc
import importlib.machinery
import os
import select
import signal
import socket
import stat
import sys
import types

_SCRIPT = "/dev/fd/3"
#: ``__main__.__loader__`` as a new interpreter has it for a script at that path.
_LOADER = importlib.machinery.SourceFileLoader("__main__", _SCRIPT)
#: The template to a child, once the spawner knows it (``F``): run the attempt.
_RUN = b"run"
_PR_SET_DUMPABLE = 4


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    preload = [m.strip() for m in (sys.argv[2] if len(sys.argv) > 2 else "").split(",") if m.strip()]
    if len(sys.argv) > 3:
        _drop(int(sys.argv[3]), preload)
    os.chdir("/")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a task (as its user, in tests) must not end it so
    _set_dumpable(0)  # no task can attach to it or read its memory, whichever its user
    errors = _preload(preload)
    # What the template holds is left alone by the collector in the children: a collection
    # there would touch (and so copy) every page of it.
    gc.collect()
    gc.freeze()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the poll below through wake_w
    spares = _Spares(control, wake_r, wake_w)
    spares.make()
    control.send(b"R" + "\n".join(errors).encode(errors="replace"))
    poll = select.poll()
    poll.register(control.fileno(), select.POLLIN)
    poll.register(wake_r, select.POLLIN)
    while True:
        for fd, _ in poll.poll():
            if fd == wake_r:
                os.read(wake_r, 512)
                _reap(control)
            elif not _serve(control, spares):
                os._exit(0)  # the spawner is gone; its children are killed by it or its namespace


#: The template forks attempts as attempt users of their own (``_become_user``): a request
#: without one is refused.
_ATTEMPT_USERS: list[bool] = []
#: How the spawner starts a template that drops itself (``kiok.worker.forkserver``): no
#: ``site``, no ``PYTHON*`` variable read, no bytecode written, until it has (``_drop``).
AS_ROOT_FLAGS = ("-S", "-E", "-B")


def _drop(user: int, preload: list[str]) -> None:
    """Started as root (``AS_ROOT_FLAGS``: only this file and the standard library it
    imports ran so far): become ``user``, the task user, keeping root as the saved user id
    only, to fork each attempt as its attempt user. Whatever runs in the template from now
    on could take root back, so it must be code root alone controls: the ``PYTHONPATH``
    directories, the site-packages (their ``.pth`` files and ``sitecustomize``) and the
    preload modules (``root_only_path``); else the template ends here, saying why (python
    tasks then run cold, as their attempt users, holding nothing). Then, as the task user,
    what those flags left out: ``PYTHONPATH``, ``site``, writing bytecode; and the flags
    are not passed on to the interpreters tasks start (``multiprocessing``'s)."""
    os.setresuid(user, user, 0)
    os.umask(0o002)  # as the spawner's attempts: what one writes outside its directory, the next can change
    _ATTEMPT_USERS.append(True)
    import site

    site.ENABLE_USER_SITE = False  # under the worker's HOME: not the template's
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    why = _untrusted(paths + site.getsitepackages())
    if why is None:
        sys.path[1:1] = paths
        site.main()
        why = _untrusted_modules(preload)
    if why is not None:
        os.write(2, f"kiok python template: {why}: not started (python tasks run cold)\n".encode())
        os._exit(3)
    sys.dont_write_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    try:
        _apply_io_settings()
    except Exception as e:  # an unknown encoding, a warning category no module has
        why = f"{type(e).__name__}: {e}"
        os.write(2, f"kiok python template: {why}: not started (python tasks run cold)\n".encode())
        os._exit(3)
    import subprocess

    passed_on = subprocess._args_from_interpreter_flags  # type: ignore[attr-defined]
    subprocess._args_from_interpreter_flags = lambda: [  # type: ignore[attr-defined]
        flag for flag in passed_on() if flag not in AS_ROOT_FLAGS
    ]


def _apply_io_settings() -> None:
    """As the task user, what ``-E`` kept the interpreter from reading and a new one applies
    at its start (``forkserver.APPLIED_AS_ROOT``; with any other set, the template is not
    started): ``PYTHONIOENCODING``, ``PYTHONWARNINGS`` (which may import the module of a
    warning category: as the task user, from where the task's would), ``PYTHONFAULTHANDLER``
    (on descriptor 2, each attempt's output once forked)."""
    encoding, _, errors = os.environ.get("PYTHONIOENCODING", "").partition(":")
    if encoding or errors:
        for stream in (sys.stdin, sys.stdout):  # errors given or as they were, as Python does
            stream.reconfigure(encoding=encoding or None, errors=errors or stream.errors)  # type: ignore[union-attr]
        if encoding:  # stderr keeps backslashreplace: a traceback is never lost to encoding
            sys.stderr.reconfigure(encoding=encoding, errors="backslashreplace")  # type: ignore[union-attr]
    options = [o for o in os.environ.get("PYTHONWARNINGS", "").split(",") if o]
    if options:
        import warnings

        sys.warnoptions[:0] = options
        warnings._processoptions(options)  # type: ignore[attr-defined]
    if os.environ.get("PYTHONFAULTHANDLER"):
        import faulthandler

        faulthandler.enable()


def _untrusted(directories: list[str]) -> str | None:
    """Why code in ``directories`` (those that exist) is not root's alone: the directory, a
    ``.pth`` file or a ``*customize`` module in it that someone else could change."""
    for directory in directories:
        if not os.path.isdir(directory):
            continue
        why = root_only_path(directory)
        if why is not None:
            return why
        for name in os.listdir(directory):
            if name.endswith(".pth") or name in ("sitecustomize.py", "usercustomize.py"):
                why = root_only_path(os.path.join(directory, name))
                if why is not None:
                    return why
    return None


def _untrusted_modules(modules: list[str]) -> str | None:
    """Why a preload module's file (or package directory) is not root's alone; one that
    cannot be found is said by ``_preload``."""
    import importlib.util

    for name in modules:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        locations = list(spec.submodule_search_locations or ())
        if not locations and spec.origin is not None:
            locations.append(spec.origin)
        for location in locations:
            if os.path.isabs(location):
                why = root_only_path(location)
                if why is not None:
                    return why
    return None


def root_only_path(path: str, _links: int = 0) -> str | None:
    """Why ``path`` is not root's alone (None: it is): every directory on the way to it, and
    it, followed through every symbolic link (the link and where it goes), must belong to
    root and be writable by nobody else (a sticky directory may be: nobody else can rename
    root's entries there). An operator's code root runs must pass this, as ``sudo`` and
    ``sshd`` ask of theirs. Also used by kiok itself (``forkserver.root_trusted``)."""
    if _links > 40:
        return f"{path}: too many symbolic links"
    if not path.startswith("/"):
        return f"{path} is not an absolute path"
    at = "/"
    parts = [part for part in path.split("/") if part and part != "."]
    for index, part in enumerate(parts):
        if part == "..":
            at = os.path.dirname(at)  # no link in ``at``: each was followed
            continue
        if at == "/" and index == 0:
            why = _not_root_only("/")
            if why is not None:
                return why
        at = os.path.join(at, part)
        why = _not_root_only(at)
        if why is not None:
            return why
        if os.path.islink(at):
            target = os.path.join(os.path.dirname(at), os.readlink(at))
            rest = "/".join(parts[index + 1 :])
            return root_only_path(os.path.join(target, rest) if rest else target, _links + 1)
    return None


def _not_root_only(path: str) -> str | None:
    try:
        st = os.lstat(path)
    except OSError as e:
        return f"{path}: {e.strerror}"
    if st.st_uid != 0:
        return f"{path} belongs to uid {st.st_uid}"
    writable = st.st_mode & 0o022 and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX)
    if writable and not stat.S_ISLNK(st.st_mode):
        return f"{path} is writable by others than root"
    return None


def _preload(modules: list[str]) -> list[str]:
    errors = []
    for name in modules:
        try:
            __import__(name)
        except BaseException as e:
            errors.append(f"{name} ({type(e).__name__}: {e})")
    return errors


def _serve(control: socket.socket, spares: _Spares) -> bool:
    """Hand the request waiting on ``control`` to a child; False when the spawner left."""
    try:
        data, fds = _receive(control, 64)
    except InterruptedError:
        return True
    if not data:
        return False
    attempt = int(data)
    try:
        if len(fds) != 3:
            raise OSError(22, f"expected 3 descriptors, got {len(fds)}")
        pid, channel = spares.hand_over(fds)
    except OSError as e:
        control.send(f"E{attempt} {e.errno or 0} {e.strerror or e}".encode(errors="replace"))
    else:
        try:
            _send_forked(control, attempt, pid)
            # Only now that the spawner knows the child may it run the attempt: should this
            # template die (a task may kill it) before, the child does not run unknown.
            channel.send(_RUN)
        except OSError:
            pass  # the spawner is gone (the child then ends), or the child is (reported by X)
        finally:
            channel.close()
    finally:
        for fd in fds:
            os.close(fd)
    spares.make()  # the next attempt's, now that this one is on its way
    return True


def _send_forked(control: socket.socket, attempt: int, pid: int) -> None:
    """Say ``F<id> <pid>``, with a pidfd of the child when this interpreter and kernel have
    them. Opened now, before this process reaps anything, it is that child's for sure (its
    pid cannot be anyone else's yet): the spawner can then keep the attempt, and tell it from
    any process that reused its pid, should this template die before it."""
    message = f"F{attempt} {pid}".encode()
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        control.send(message)
        return
    rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [pidfd]).tobytes())
    try:
        control.sendmsg([message], [rights])
    finally:
        os.close(pidfd)


class _Spares:
    """One child forked ahead, waiting for the next attempt's descriptors: the fork and the
    child's first steps (its session, its signals, letting go of the template's descriptors)
    happen between attempts rather than while one waits to start. It is forked from this
    clean template like any child, and learns nothing before its attempt: which one it runs
    is decided when a request comes."""

    def __init__(self, control: socket.socket, wake_r: int, wake_w: int) -> None:
        self._template_fds = (control.fileno(), wake_r, wake_w)
        self._pid = 0
        self._socket: socket.socket | None = None

    def make(self, *, or_raise: bool = False, holding: tuple[int, ...] = ()) -> None:
        """Fork the spare, unless there is one; ``OSError`` with ``or_raise`` if it cannot
        be (else the next request tries again). ``holding``: descriptors open here now
        that are no child's (an attempt's: it is given them, as the ones it reads)."""
        if self._socket is not None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            if or_raise:
                raise
            return
        if pid == 0:
            ours.close()
            _spare(theirs, self._template_fds + holding)
        theirs.close()
        self._pid, self._socket = pid, ours

    def hand_over(self, fds: array.array[int]) -> tuple[int, socket.socket]:
        """Give ``fds`` to the spare (or, when it is gone, to one forked now): its pid, and
        the socket to send it ``_RUN`` on. The spare's socket took them, so it had not exited
        (an exit closes it), and it cannot have been reaped: its pid is still its own."""
        for _ in range(3):
            self.make(or_raise=True, holding=tuple(fds))
            spare, self._socket = self._socket, None
            assert spare is not None
            try:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._pid, signal.SIGCONT)  # something may have stopped it
                spare.sendmsg([b"go"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
                return self._pid, spare
            except OSError:
                spare.close()  # it died (a task may kill it): fork another
        raise OSError(errno.EAGAIN, "the children forked for the task died at once")


def _spare(channel: socket.socket, template_fds: tuple[int, ...]) -> None:
    """In a spare: its first steps, then wait for its attempt's descriptors (none: the
    template is gone, and so is the spare). Never returns."""
    try:
        _start(template_fds)
        while True:
            try:
                data, fds = _receive(channel, 8)
                break
            except InterruptedError:
                continue
    except BaseException:
        os._exit(127)
    if not data or len(fds) != 3:
        os._exit(0)
    _child(fds[0], fds[1], fds[2], channel)


def _receive(channel: socket.socket, size: int) -> tuple[bytes, array.array[int]]:
    """One message of at most ``size`` bytes and the descriptors that came with it (room for
    an attempt's three: any beyond are closed by the kernel, as the message is truncated)."""
    fds = array.array("i")
    data, ancillary, _, _ = channel.recvmsg(size, socket.CMSG_SPACE(3 * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    return data, fds


def _start(template_fds: tuple[int, ...]) -> None:
    """A new child's first steps: its own session, the signals a program starts with, none
    of the template's descriptors."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for fd in template_fds:
        os.close(fd)


def _reap(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        control.send(f"X{pid} {status}".encode())


def _child(out: int, script: int, request: int, channel: socket.socket) -> None:
    """In the new process, after ``_start``: become the attempt (its descriptors, directory
    and environment), wait for the template's ``_RUN`` on ``channel``, run the script, exit.
    Never returns."""
    try:
        if channel.fileno() <= 3:  # in the way of the descriptors the attempt gets
            import fcntl

            moved = fcntl.fcntl(channel.fileno(), fcntl.F_DUPFD_CLOEXEC, 4)
            channel.close()
            channel = socket.socket(fileno=moved)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.dup2(script, 3)
        uid, cwd, env = _read_request(request)
        for fd in {out, script, request} - {1, 2, 3}:
            os.close(fd)
        if uid is not None:
            _become_user(uid)
        elif _ATTEMPT_USERS:
            raise PermissionError("no attempt user given")
        os.chdir(cwd)
        _become_env(env)
        sys.argv[:] = [_SCRIPT]
        if hasattr(sys, "orig_argv"):  # Python 3.10 and later
            sys.orig_argv[:] = [sys.executable, "-u", _SCRIPT]
        _reseed()
        if not _cleared(channel):
            raise RuntimeError("the python template exited as it started")
        _set_dumpable(1)  # as a new process would be
    except BaseException as e:
        os.write(2, f"kiok: the python task could not start: {e}\n".encode(errors="replace"))
        os._exit(127)
    status = 1
    try:
        status = _run()
    finally:  # whatever escapes, this process never returns into the template's code
        os._exit(status)


def _reseed() -> None:
    """Every fork starts from the template's random generators. Python's ``random`` reseeds
    itself in a forked child; numpy's global one (``numpy.random``, imported by pandas among
    others) does not, so each attempt would draw the numbers the last one did."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        with contextlib.suppress(Exception):
            numpy_random.seed()


def _cleared(channel: socket.socket) -> bool:
    """Whether the template said ``_RUN`` (not: it died first, and the spawner may not know
    this process); ``channel`` is closed either way, before the task could inherit it."""
    try:
        while True:
            try:
                return channel.recv(8) == _RUN
            except InterruptedError:
                continue
    except OSError:
        return False
    finally:
        channel.close()


def _become_env(env: dict[bytes, bytes]) -> None:
    """Make the environment exactly ``env``, changing only the variables that differ. The
    template runs with the spawner's environment, which is most of every attempt's, and each
    change writes to memory the child otherwise shares with the template (copy-on-write):
    clearing and refilling it all cost ~60 page copies and ~0.2 ms per attempt."""
    current = os.environb
    for key in [key for key in current if key not in env]:
        del current[key]
    for key, value in env.items():
        if current.get(key) != value:
            current[key] = value


def _read_all(fd: int) -> bytes:
    """A memfd's content, from its start (its offset is shared with whoever else holds it)."""
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _read_request(fd: int) -> tuple[int | None, bytes, dict[bytes, bytes]]:
    """The attempt's user (None: the template's), working directory and environment,
    NUL-separated (``uid\\0cwd\\0K=V\\0K=V``)."""
    uid, cwd, *pairs = _read_all(fd).split(b"\0")
    env = {}
    for pair in pairs:
        key, _, value = pair.partition(b"=")
        env[key] = value
    return (int(uid) if uid else None), cwd, env


def main_path(pid: int) -> str:
    """``__main__.__file__`` of an attempt: its script through the attempt process's own
    descriptor 3, a path every process of the attempt reads the same script at (its user's,
    and dumpable). ``multiprocessing``'s ``spawn`` and ``forkserver`` re-run the main script
    from that path in each process they start; ``/dev/fd/3`` would be each one's own
    descriptor 3, not the script, and its pool would wait for ever for workers that cannot
    find the script's functions. Tracebacks still name ``/dev/fd/3``."""
    return f"/proc/{pid}/fd/3"


def _become_user(uid: int) -> None:
    """Become attempt user ``uid`` for good: root (the saved user id) is taken back only
    to give it up, with every capability."""
    if uid <= 0 or uid == os.getuid():
        raise PermissionError(f"uid {uid} is not an attempt user")
    os.setresuid(-1, 0, -1)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid):
        raise PermissionError(f"could not become uid {uid}")


def _run() -> int:
    """Run ``/dev/fd/3`` as ``python -u /dev/fd/3`` would (a fresh ``__main__``, the same
    exit statuses, tracebacks and end of the process) and return the exit status."""
    main = types.ModuleType("__main__")
    main.__dict__.update(
        __file__=main_path(os.getpid()),
        __builtins__=builtins,
        __cached__=None,
        __annotations__={},
        __loader__=_LOADER,
    )
    sys.modules["__main__"] = main
    if "linecache" in sys.modules:
        sys.modules["linecache"].clearcache()  # it may hold the template's own /dev/fd/3
    try:
        code = compile(_read_all(3), _SCRIPT, "exec", dont_inherit=True)
        exec(code, main.__dict__)
        status = 0
    except SystemExit as e:
        status = _exit_status(e.code)
    except BaseException as e:
        # From the script's own frame, as the interpreter shows it; none for what compiling
        # the script raised (a SyntaxError: the interpreter shows no traceback then).
        tb = e.__traceback__
        if tb is not None:
            e.__traceback__ = tb = tb.tb_next
        sys.excepthook(type(e), e, tb)
        status = -signal.SIGINT if isinstance(e, KeyboardInterrupt) else 1
    status = _shutdown(status)
    _finalize(main)
    if status < 0:  # ended by KeyboardInterrupt: end by SIGINT, as the interpreter does
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return status


def _shutdown(status: int) -> int:
    """What the interpreter does on its way out: wait for threads, run ``atexit``, flush."""
    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
        atexit._run_exitfuncs()
    except SystemExit as e:
        status = _exit_status(e.code)
    _flush_stdio()
    return status


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()


def _finalize(main: types.ModuleType) -> None:
    """What an interpreter does last, and a fork ending in ``os._exit`` would skip: the
    script's globals are cleared (those starting with one ``_`` first, as the interpreter does)
    and what they held is collected, so a file the script left open is closed, its buffered
    data written, and ``__del__`` methods run. The template's own objects are frozen
    (``gc.freeze``): the collection looks only at what the attempt made. While a daemon
    thread still runs, files are flushed instead (below)."""
    if "threading" not in sys.modules or sys.modules["threading"].active_count() == 1:
        names = main.__dict__
        private = [k for k in names if k.startswith("_") and not k.startswith("__")]
        for key in [*private, *(k for k in names if k != "__builtins__")]:
            names[key] = None
    else:
        # A daemon thread still runs: an interpreter stops those before it clears anything,
        # which cannot be done here (they would see their globals go). What files the script
        # holds are flushed instead (the template's objects, frozen, are not listed).
        import io

        for obj in gc.get_objects():
            if isinstance(obj, io.IOBase):
                with contextlib.suppress(Exception):
                    obj.flush()
    gc.collect()
    _flush_stdio()  # what a __del__ printed


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


_libc: list[object] = []


def _set_dumpable(value: int) -> None:
    """``prctl(PR_SET_DUMPABLE)``; libc is loaded once, in the template."""
    try:
        if not _libc:
            import ctypes

            _libc.append(ctypes.CDLL(None, use_errno=True))
        _libc[0].prctl(_PR_SET_DUMPABLE, value, 0, 0, 0)  # type: ignore[attr-defined]
    except (ImportError, OSError, AttributeError):
        pass


if __name__ == "__main__":
    main()
