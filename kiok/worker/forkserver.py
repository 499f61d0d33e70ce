"""The task spawner's side of the python task template (``kiok.worker.python_template``).

A spawner configured with a template (``spawn_protocol.Template``) keeps one warm interpreter,
its child, and has it ``fork()`` a process for each python attempt instead of starting a new
interpreter (~1 ms instead of ~25). The template is started with the task interpreter, the
spawner's environment and user, and so in the tasks' namespaces; it gets requests on a
``SOCK_SEQPACKET`` socket and reports forks and exits on it (formats in that module).

What here is pure: encoding a request, decoding a reply, deciding when a template is due for
recycling. ``spawner.Spawner`` owns the processes and the event loop.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import glob
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kiok.worker import spawn_protocol as sp
from kiok.worker.python_template import AS_ROOT_FLAGS, root_only_path

#: Read now, while the spawner can still read kiok's files (it then drops to the task user).
_SOURCE = (Path(__file__).parent / "python_template.py").read_bytes()
#: Signals Python (or the spawner) ignores that the template must get back at their defaults.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT)
_TEMPLATE_FD = 3
_CONTROL_FD = 4


def root_trusted(python: str) -> str | None:
    """Why interpreter ``python`` is not one to start as root (None: it is). Started so, it
    runs the interpreter, a virtual environment's ``pyvenv.cfg`` (which names the library
    it runs) and its standard library before it can drop: each must be root's alone
    (``root_only_path``: every directory on the way, every link followed), as must the two
    directories a ``pyvenv.cfg`` is looked for in (nobody else may add one). The spawner's
    directory is an attempt's, so a relative path is refused too."""
    why = root_only_path(python)
    if why is not None:
        return why
    prefixes = [os.path.dirname(os.path.dirname(os.path.realpath(python)))]
    here = os.path.dirname(python)
    for cfg in (os.path.join(here, "pyvenv.cfg"), os.path.join(os.path.dirname(here), "pyvenv.cfg")):
        if not os.path.lexists(cfg):
            continue
        why = root_only_path(cfg)
        if why is not None:
            return why
        home = _venv_home(cfg)
        if home is not None:
            why = root_only_path(home)
            if why is not None:
                return why
            prefixes.append(os.path.dirname(os.path.realpath(home)))
    for prefix in prefixes:
        lib = os.path.join(prefix, "lib")
        for path in [lib, *sorted(glob.glob(os.path.join(lib, "python3*")))]:
            why = root_only_path(path)
            if why is None and os.path.isdir(os.path.join(path, "lib-dynload")):
                why = root_only_path(os.path.join(path, "lib-dynload"))
            if why is not None:
                return why
    return None


def _venv_home(cfg: str) -> str | None:
    """The ``home`` a ``pyvenv.cfg`` names (where its base interpreter is)."""
    try:
        with open(cfg, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition("=")
                if sep and key.strip() == "home":
                    return value.strip()
    except OSError:
        return None
    return None


@dataclass(frozen=True)
class Ready:
    """The template has imported its preloads; ``errors``: those it could not, one per line."""

    errors: tuple[str, ...]


@dataclass(frozen=True)
class Forked:
    attempt: int
    pid: int
    #: A pidfd of the child, sent with the message (None: the template has no pidfds); the
    #: receiver owns it.
    pidfd: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ForkFailed:
    attempt: int
    errno: int
    message: str


@dataclass(frozen=True)
class ChildExited:
    pid: int
    status: int


Reply = Ready | Forked | ForkFailed | ChildExited


def decode_reply(packet: bytes) -> Reply:
    """One packet from the template; ``ValueError`` for anything else."""
    kind, body = packet[:1], packet[1:].decode(errors="replace")
    if kind == b"R":
        return Ready(tuple(line for line in body.split("\n") if line))
    if kind == b"F":
        attempt, pid = body.split()
        return Forked(int(attempt), int(pid))
    if kind == b"X":
        pid, status = body.split()
        return ChildExited(int(pid), int(status))
    if kind == b"E":
        attempt, number, message = body.split(" ", 2)
        return ForkFailed(int(attempt), int(number), message)
    raise ValueError(f"not a template message: {packet[:40]!r}")


def encode_request(cwd: str, env: dict[str, str], uid: int | None = None) -> bytes:
    """What a child reads to become its attempt: ``uid\\0cwd\\0K=V\\0...`` (``uid`` empty: the
    template's own user). ``ValueError`` for a NUL inside (as ``posix_spawn`` would refuse it)."""
    parts = [b"" if uid is None else str(uid).encode(), os.fsencode(cwd)]
    parts += [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
    if any(b"\0" in p for p in parts):
        raise ValueError("embedded null byte")
    return b"\0".join(parts)


@dataclass(frozen=True)
class TemplateConfig:
    python: str
    preload: tuple[str, ...]
    #: Forks before the template is replaced by a fresh one.
    max_tasks: int


@dataclass(eq=False)
class TemplateProcess:
    """One running template and what the spawner knows of it."""

    config: TemplateConfig
    pid: int
    control: socket.socket
    ready: bool = False
    #: Reaped already (its pid may be anyone's now).
    reaped: bool = False
    forks: int = 0
    #: No new forks: it ends once its children have.
    retired: bool = False
    #: Requests waiting for it to be ready: the start message and its three descriptors.
    waiting: list[tuple[sp.Start, tuple[int, int, int]]] = field(default_factory=list)
    #: Attempt ids it forked, or was asked to, that have not ended.
    attempts: set[int] = field(default_factory=set)
    #: Its children (pid -> attempt id) as it reported them. Per template: another
    #: template's child may have the pid of one this one reaped, its ``X`` not read yet.
    children: dict[int, int] = field(default_factory=dict)

    def due_for_recycling(self) -> bool:
        return self.forks >= self.config.max_tasks

    def send_fork(self, attempt: int, out_fd: int, script_fd: int, request_fd: int) -> None:
        """Ask for a child; ``BlockingIOError`` when the template is not reading its requests."""
        rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS, _fds(out_fd, script_fd, request_fd))
        self.control.sendmsg([str(attempt).encode()], [rights])
        self.forks += 1
        self.attempts.add(attempt)
        self.wake()

    def wake(self) -> None:
        """Continue it, should a task (its user) have stopped it (SIGSTOP)."""
        if not self.reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)

    def receive(self) -> tuple[list[Reply], bool]:
        """The replies waiting on its socket (also those it sent before it died, which stay
        queued), and whether it is still there. A ``Forked`` carries the pidfd that came
        with it (close-on-exec: no task started later inherits it); any other descriptor
        is closed."""
        replies: list[Reply] = []
        while True:
            try:
                packet, ancillary, _, _ = self.control.recvmsg(
                    4096, socket.CMSG_SPACE(4 * _INT_SIZE), socket.MSG_CMSG_CLOEXEC
                )
            except BlockingIOError:
                return replies, True
            except OSError:
                return replies, False
            fds = _received_fds(ancillary)
            if not packet:
                _close(fds)
                return replies, False
            try:
                reply = decode_reply(packet)
            except ValueError:
                _close(fds)
                raise
            if isinstance(reply, Forked) and fds:
                reply = Forked(reply.attempt, reply.pid, fds.pop(0))
            _close(fds)
            replies.append(reply)

    def kill(self) -> None:
        """Make sure it is gone and reap it (unless the spawner, as pid 1 or subreaper,
        reaped it already). Once reaped, every child it had has been re-parented (to the
        spawner where it adopts orphans): the kernel does that before the exit is seen."""
        if not self.reaped:
            self.reaped = True
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass

    def end(self) -> None:
        """Close its socket (it exits), make sure it is gone, and reap it."""
        self.control.close()
        for _, fds in self.waiting:
            for fd in fds:
                os.close(fd)
        self.waiting.clear()
        self.kill()


def _fds(*fds: int) -> bytes:
    return array.array("i", fds).tobytes()


_INT_SIZE = array.array("i").itemsize


def _received_fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors that came in ``ancillary`` (``SCM_RIGHTS``)."""
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % _INT_SIZE)])
    return list(fds)


def _close(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _above_targets(fd: int) -> int:
    """``fd``, or a close-on-exec copy of it above the descriptors the template is given
    (a ``dup2`` onto itself would keep close-on-exec; onto the other, would overwrite it)."""
    if fd > _CONTROL_FD:
        return fd
    copy = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _CONTROL_FD + 1)
    os.close(fd)
    return copy


#: ``PYTHON*`` variables a template started as root (``python -S -E -B``, which reads none)
#: still honours: applied once it has dropped to the task user (``python_template._drop``),
#: or the same either way (``-u`` is passed; the user site is off; no session is interactive).
#: Any other set in the tasks' environment (``PYTHONHASHSEED``, ``PYTHONOPTIMIZE``,
#: ``PYTHONUTF8``, ``PYTHONBREAKPOINT``, …) only a new interpreter applies, so python tasks
#: then run cold rather than silently without it.
APPLIED_AS_ROOT = frozenset(
    {
        "PYTHONPATH",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONIOENCODING",
        "PYTHONWARNINGS",
        "PYTHONFAULTHANDLER",
        "PYTHONUNBUFFERED",
        "PYTHONNOUSERSITE",
        "PYTHONSTARTUP",
    }
)


def _unapplied_as_root(key: str) -> bool:
    return (key.startswith("PYTHON") and key not in APPLIED_AS_ROOT) or key == "SSLKEYLOGFILE"


def start_template(
    config: TemplateConfig, env: dict[str, str], memfd: Callable[[str], int], user: int | None = None
) -> TemplateProcess:
    """Start a template (its source in a memfd made by ``memfd``) in its own session;
    raises ``OSError`` when it cannot start. ``user``: the template becomes that user
    itself, keeping root as its saved user id to fork attempts as their attempt users (this
    process is root then, ``Host.acting_as``)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs = socket.socket(fileno=_above_targets(theirs.detach()))
    source_fd = _above_targets(memfd(_SOURCE.decode()))
    try:
        pid = os.posix_spawn(
            config.python,
            [
                config.python,
                *([] if user is None else AS_ROOT_FLAGS),
                "-u",
                f"/dev/fd/{_TEMPLATE_FD}",
                str(_CONTROL_FD),
                ",".join(config.preload),
                *([] if user is None else [str(user)]),
            ],
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, source_fd, _TEMPLATE_FD),
                (os.POSIX_SPAWN_DUP2, theirs.fileno(), _CONTROL_FD),
            ],
            setsid=True,
            setsigdef=_DEFAULT_SIGNALS,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
        os.close(source_fd)
    ours.setblocking(False)
    return TemplateProcess(config, pid, ours)


class Host(Protocol):
    """What ``Templates`` needs of the spawner."""

    @property
    def base_env(self) -> dict[str, str]: ...

    @property
    def template_user(self) -> int | None:
        """The user templates run as when attempts run as users of their own (None: not)."""

    def acting_as(self, euid: int, *, real: int | None = None) -> contextlib.AbstractContextManager[None]: ...

    def memfd(self, data: str | bytes) -> int: ...

    def register(self, fd: int) -> None: ...

    def unregister(self, fd: int) -> None: ...

    def send(self, msg: sp.Message) -> None: ...

    def forked(self, attempt_id: int, pid: int, pidfd: int | None) -> None: ...

    def forked_exited(self, attempt_id: int, status: int, error: str | None = None) -> None: ...

    def orphaned(self, attempt_id: int) -> None: ...

    def unstarted(self, attempt_id: int, failure: sp.Failed | None) -> None: ...

    def restart(self, msg: sp.Start) -> None: ...


class ColdByDesign(Exception):
    """No template is started, as documented (docs/dags.md, "Forked or cold"): a setting
    that a template started as root cannot honour. Not a fault: python tasks run cold, said
    once as a warning, in one clause that says why."""


DIED = "the python template process exited and the task's end could not be known; its processes were killed"


class Templates:
    """A spawner's python templates: the current one (started when configured, and again
    when it dies or is recycled) and retired ones that still have attempts running.

    A template that dies before it is ready could not start: said once, and python tasks
    then run cold (their waiting attempts too) until the next ``Template`` message. One that
    dies later (the OOM killer, an operator; a task, when tasks run as its user) is replaced
    at once, and its attempts are the host's to keep (``Host.orphaned``): nothing must fail
    the other attempts, other DAGs' included, by killing their template."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._config: TemplateConfig | None = None
        self._current: TemplateProcess | None = None
        self._by_fd: dict[int, TemplateProcess] = {}
        self._broken = False
        self._said: set[str] = set()

    def configure(self, msg: sp.Template) -> None:
        try:
            preload = parse_preload(",".join(msg.preload))
        except ValueError as e:
            self._notice(str(e))
            preload = ()
        config = TemplateConfig(msg.python, preload, msg.max_tasks) if msg.max_tasks > 0 else None
        if self._current is not None and self._current.config != config:
            self._retire(self._current)
        self._config = config
        self._broken = False
        self._ensure()

    def for_start(self, msg: sp.Start) -> TemplateProcess | None:
        """The template to fork ``msg`` from; None: start it cold."""
        if not msg.fork or self._config is None or msg.argv[:1] != [self._config.python]:
            return None
        return self._ensure()

    def fork(self, template: TemplateProcess, msg: sp.Start, out: int, script: int, request: int) -> None:
        """Send (or hold until it is ready) the request; the descriptors are ours to close."""
        if not template.ready:
            template.waiting.append((msg, (out, script, request)))
            return
        try:
            template.send_fork(msg.id, out, script, request)
        except OSError as e:
            self._host.unstarted(
                msg.id, sp.Failed(msg.id, e.errno or 0, f"python template: {e.strerror}", None)
            )
            self._retire(template)
        finally:
            for fd in (out, script, request):
                os.close(fd)
        if template.due_for_recycling():
            self._retire(template)
            self._ensure()

    def event(self, fd: int) -> None:
        template = self._by_fd.get(fd)
        if template is None:
            return
        replies, alive = template.receive()
        self._handle(template, replies, dead=not alive)
        if not alive:
            self._gone(template)
            return
        self._end_if_idle(template)

    def _handle(self, template: TemplateProcess, replies: list[Reply], *, dead: bool = False) -> None:
        """Act on ``replies`` (``dead``: sent by a template that died since: not ready)."""
        for reply in replies:
            if isinstance(reply, Ready):
                if not dead:
                    self._ready(template, reply)
            elif isinstance(reply, Forked):
                template.children[reply.pid] = reply.attempt
                self._host.forked(reply.attempt, reply.pid, reply.pidfd)
            elif isinstance(reply, ChildExited):
                attempt = template.children.pop(reply.pid, None)
                if attempt is not None:
                    self._host.forked_exited(attempt, reply.status)
            else:
                template.attempts.discard(reply.attempt)
                failure = sp.Failed(reply.attempt, reply.errno, f"python template: {reply.message}", None)
                self._host.unstarted(reply.attempt, failure)

    def attempt_done(self, template: TemplateProcess, attempt_id: int) -> None:
        template.attempts.discard(attempt_id)
        self._end_if_idle(template)

    def reaped(self, pid: int) -> None:
        """The spawner reaped ``pid`` (as pid 1 it reaps every child): if a template's, do
        not signal that pid again."""
        for template in self._by_fd.values():
            if template.pid == pid:
                template.reaped = True

    def end(self, template: TemplateProcess) -> None:
        """End ``template``, which does not answer (a task may keep it stopped), as if it had
        died: its attempts are orphaned, and a new one is started."""
        if template in self._by_fd.values():
            self._gone(template)

    def pids(self) -> set[int]:
        """The pids of the running templates (the current one and retired ones)."""
        return {template.pid for template in self._by_fd.values()}

    def close(self) -> None:
        for template in list(self._by_fd.values()):
            self._drop(template)

    def _ensure(self) -> TemplateProcess | None:
        if self._config is None or self._broken:
            return None
        if self._current is None:
            try:
                user = self._host.template_user
                if user is None:
                    self._current = start_template(self._config, self._host.base_env, self._host.memfd)
                else:
                    self._current = self._start_as_root(self._config, user)
            except ColdByDesign as e:
                self._broken = True
                self._notice(
                    f"python tasks run cold, each a new {self._config.python}: {e}",
                    warning=True,
                )
                return None
            except OSError as e:
                self._broken = True
                self._notice(
                    f"the python template ({self._config.python}) could not start: {e}; python tasks run cold"
                )
                return None
            self._by_fd[self._current.control.fileno()] = self._current
            self._host.register(self._current.control.fileno())
        return self._current

    def _start_as_root(self, config: TemplateConfig, user: int) -> TemplateProcess:
        """Start a template that forks attempts as their attempt users: as root, which it
        stays only until its first statement (``python_template.main``). So only an
        interpreter that root alone can change (``root_trusted``), from ``/`` (not the last
        attempt's directory), making nothing group-writable meanwhile. Real user root too: a
        start that gains privilege would be a "secure" one, its LD_* variables ignored."""
        why = root_trusted(config.python)
        if why is not None:
            raise ColdByDesign(
                "the python template, started as root, runs only an interpreter root alone can "
                f"change, and {why}"
            )
        unapplied = sorted(
            key for key, value in self._host.base_env.items() if _unapplied_as_root(key) and value
        )
        if unapplied:
            names = ", ".join(unapplied)
            raise ColdByDesign(
                f"the worker's environment sets {names}, which the python template (started as root, "
                "with python -E) could not apply"
            )
        os.chdir("/")
        env = {key: value for key, value in self._host.base_env.items() if not key.startswith("LD_")}
        umask = os.umask(0o022)
        try:
            with self._host.acting_as(0, real=0):
                return start_template(config, env, self._host.memfd, user)
        finally:
            os.umask(umask)

    def _ready(self, template: TemplateProcess, reply: Ready) -> None:
        template.ready = True
        if reply.errors:
            self._notice(f"kiok.worker.python.preload: cannot import {'; '.join(reply.errors)}")
        waiting, template.waiting = template.waiting, []
        for msg, (out, script, request) in waiting:
            self.fork(template, msg, out, script, request)

    def _gone(self, template: TemplateProcess) -> None:
        """``template`` died (or is to be ended). Reaped first, so that all it said before is
        in its socket and its children are re-parented; then what it said is acted on, and
        its attempts still running are orphaned to the host."""
        was_ready = template.ready
        waiting, template.waiting = template.waiting, []
        template.kill()
        if template in self._by_fd.values():
            self._handle(template, template.receive()[0], dead=True)
        self._drop(template)
        template.children.clear()
        for attempt in sorted(template.attempts):
            self._host.orphaned(attempt)
        if not was_ready:
            self._broken = True
            self._notice("the python template exited on start (see the worker's log); python tasks run cold")
            for msg, fds in waiting:
                for fd in fds:
                    os.close(fd)
                self._host.unstarted(msg.id, None)
                self._host.restart(msg)
        else:
            for _, fds in waiting:
                for fd in fds:
                    os.close(fd)
            self._ensure()

    def _retire(self, template: TemplateProcess) -> None:
        template.retired = True
        if self._current is template:
            self._current = None
        self._end_if_idle(template)

    def _end_if_idle(self, template: TemplateProcess) -> None:
        if template.retired and not template.attempts and not template.waiting:
            self._drop(template)

    def _drop(self, template: TemplateProcess) -> None:
        fd = template.control.fileno()
        if self._by_fd.pop(fd, None) is not None:
            self._host.unregister(fd)
        if self._current is template:
            self._current = None
        template.end()

    def _notice(self, message: str, *, warning: bool = False) -> None:
        if message not in self._said:
            self._said.add(message)
            self._host.send(sp.Notice(message, warning))


def parse_preload(text: str) -> tuple[str, ...]:
    """``kiok.worker.python.preload``: comma-separated module names; ``ValueError`` naming
    the first one that is not a dotted Python name."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ValueError(f"kiok.worker.python.preload: {name!r} is not a module name")
    return names


__all__ = [
    "DIED",
    "ChildExited",
    "ColdByDesign",
    "ForkFailed",
    "Forked",
    "Ready",
    "Reply",
    "TemplateConfig",
    "TemplateProcess",
    "Templates",
    "decode_reply",
    "encode_request",
    "parse_preload",
    "start_template",
]
