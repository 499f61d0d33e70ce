"""The task spawner: the helper process that starts, watches and stops a worker's task
processes (``python -m kiok.worker.spawner FD``, started by ``ProcessRunner``).

Why a process of its own: spawning from the worker's threads made every fork, read and
wait hand the worker's one GIL back and forth with its event loop, and each hand-back could
wait for the loop's switch interval. Here one thread on epoll owns every task process —
their output pipes and their pidfds (readable when the process exits) — and the worker
sees one socket carrying batched messages (``kiok.worker.spawn_protocol``).

Each attempt runs in its own session (so its whole process group can be signalled), in its
working directory, stdin closed, stdout and stderr merged into one pipe read in 64 KiB
chunks, and its script (if any) readable at file descriptor 3: a memfd, so a script (which
may hold resolved secrets) is neither an argument in ``/proc/<pid>/cmdline`` nor a file.
Stopping — on timeout or request — is SIGTERM to the group, a grace period, then SIGKILL;
when an attempt ends, anything left in its group is killed and its directory is emptied
before the worker hears of the end, and again before the next attempt starts in it (an
attempt that ran while it was idle may have written into it). When the worker goes away
(its end of the socket closes, even on kill -9), every running task group is killed and the
spawner exits.

Isolated (``kiok.worker.isolation``), the spawner is given the task user's ``uid:gid`` and
the attempt users' uids: it becomes the task user once its imports are done, keeping root as
its saved user id only, and starts each attempt as the attempt user the worker names for it
(``kiok.worker.attempt_ids``: root is taken for the calls that need it, and only then).
Started through ``unshare --pid``, it is pid 1 of its namespace; without one, it is the
tasks' child subreaper. Either way orphans of earlier attempts become its children, and are
reaped along with the attempts' own processes; when an attempt ends, what it left outside its
group (a process in a session of its own) is killed too, unless it is a running attempt's
(its real user is one of theirs).

In namespaces of its own (``user+pidns``: told by ``PRIVATE_ENV``), it mounts a fresh tmpfs
on ``/tmp``, ``/var/tmp`` and ``/dev/shm`` before it drops (``private_scratch``), and, with an
IPC namespace, owns every System V IPC object and POSIX message queue its tasks make. Made
per attempt, such namespaces would cost a process creation per task; instead, what is in them
is removed whenever an attempt starts while no other runs (``Scratch``): attempts that
overlap in time share them, but nothing a task leaves there outlives the spawner's next idle
moment. The removal is cheap when there is nothing to remove, and done in slices between
events when there is much (the attempt waits for it, the spawner's loop does not).

Configured with a python template (``spawn_protocol.Template``), it keeps one warm
interpreter as its child (``kiok.worker.forkserver``) and a python attempt is a ``fork()`` of
it: the same session, descriptors, directory, environment, timeout and stop as above, with
the exit reported by the template (the attempt's parent) rather than by a pidfd. No task can
signal the template (it is not an attempt user), but it can be stopped or die all the same
(an operator, the OOM killer; a task, in tests that run tasks as its user). Stopped, it is
continued with each fork asked of it, and one that still has not reported a killed attempt's
end a grace period later is ended as if dead. Dead, its attempts become this process's
children (as pid 1 or subreaper) and run on to their real end, told apart from any process
that reused a pid by the pidfd the template sends with each fork (``orphaned``); only one
whose end cannot be known (not re-parented here, or reaped by the template unreported)
fails.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import select
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import msgpack

from kiok.worker import forkserver as fs
from kiok.worker import procfs
from kiok.worker import spawn_protocol as sp
from kiok.worker.attempt_ids import AttemptIds
from kiok.worker.scratch import (
    DIR_FLAGS,
    PRIVATE_ENV,
    Scratch,
    empty_dir,
    empty_steps,
    hide_processes,
    private_scratch,
)

_READ_SIZE = 65536
#: How long the output pipe may stay open after the main process exited (a background
#: child holding it) before the group is killed; after twice that, it is closed.
_PIPE_DRAIN_S = 1.0
#: Reads of what is left in an output pipe held open outside the attempt (a pipe holds 1 MiB
#: at most to an unprivileged writer: 16 reads of 64 KiB).
_LAST_READS = 16
#: Without pidfds (Linux < 5.3) an exit is noticed by polling this often.
_EXIT_POLL_S = 0.01
#: Signals Python (or the spawner) ignores that a task must get back at their defaults.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT)
#: Where a task finds its script (``/dev/fd/3``).
SCRIPT_FD = 3
#: How long one slice of emptying the private temporary directories and IPC (``Scratch``) may
#: hold up the loop; slices go on between events until it is done.
_SCRUB_SLICE_S = 0.005
#: Removals between two looks at the clock in such a slice (each ~2-10 µs).
_SCRUB_CHECK_EVERY = 64


@dataclass(eq=False)
class _Attempt:
    id: int
    pid: int
    out_fd: int
    exit_fd: int | None
    cwd: str
    deadline: float
    grace_s: float
    reason: str | None = None
    kill_at: float | None = None
    exited_at: float | None = None
    exit_code: int = -1
    eof: bool = False
    #: The python template that forks (forked) it; its pid is 0 until the fork is reported.
    template: fs.TemplateProcess | None = None
    #: Why its end is unknown (its template died), reported with its exit.
    error: str | None = None
    #: When it was started (``CLOCK_BOOTTIME``, the clock of a process's start time in /proc).
    since: float = 0.0
    #: SIGKILLed already (forked: its template has a grace period to report its end).
    killed: bool = False
    #: Forked: a pidfd of its process, sent by its template, not polled (the template reports
    #: the exit): what identifies the process should it become this one's child.
    pidfd: int | None = None
    #: The attempt user it runs as (None: the spawner's own).
    uid: int | None = None


def signal_group(pid: int, sig: int) -> None:
    """Signal process group ``pid`` (a task's session), if it still exists (0: not yet
    known, nothing to signal; never this process's own group)."""
    if pid <= 0:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _executable(argv0: str, env: dict[str, str]) -> str:
    """Where ``argv0`` is, searched on the task's own PATH as ``execvpe`` would."""
    if "/" in argv0:
        return argv0
    found = shutil.which(argv0, path=env.get("PATH", os.defpath))
    if found is None:
        raise FileNotFoundError(2, "No such file or directory", argv0)
    return found


def _exit_code(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


class Spawner:
    def __init__(
        self,
        control: socket.socket,
        *,
        adopts: bool | None = None,
        scratch: Scratch | None = None,
        ids: AttemptIds | None = None,
    ) -> None:
        if adopts is None:
            adopts = os.getpid() == 1
        self._control = control
        self._poll = select.epoll()
        self._poll.register(control.fileno(), select.EPOLLIN)
        self._unpacker = msgpack.Unpacker(raw=False)
        self._attempts: dict[int, _Attempt] = {}
        self._by_fd: dict[int, _Attempt] = {}
        #: Attempts whose main process has not been reaped yet.
        self._by_pid: dict[int, _Attempt] = {}
        #: Forked attempts (with a pidfd) whose template is to report their end, by pid: a
        #: dead template's are re-parented here, and may exit before its death is noticed.
        self._forked: dict[int, _Attempt] = {}
        #: Orphaned task processes become this process's children: it is pid 1 of a
        #: namespace, or (isolated without one) a child subreaper (``adopt_orphans``).
        #: ``_init`` (reap every child when an attempt finishes) a test may set on a spawner
        #: that adopts nothing; ``_adopts`` (kill what ended attempts left behind, found
        #: among this process's children) never: they would be the test's own.
        self._adopts = self._init = adopts
        self._pid = os.getpid()
        self._outbox = bytearray()
        self._pack = msgpack.Packer(use_bin_type=True).pack
        #: The worker's task environment, which every task's own variables are added to.
        self._base_env = dict(os.environ)
        self._templates = fs.Templates(self)
        #: This process's /proc list of its children, kept open (``_own_children``).
        self._children_fd: int | None = None
        #: Its private temporary directories and IPC, emptied as an attempt starts while no
        #: other runs (None: it has none, the host's are the tasks').
        self._scratch = scratch
        #: An attempt has started since they were last emptied.
        self._scratch_used = False
        #: The emptying under way, in slices (``_empty_scratch``), and the starts waiting for it.
        self._emptying: Iterator[None] | None = None
        self._waiting: list[sp.Start] = []
        #: The attempt users it starts attempts as, keeping root for that (None: it runs
        #: them as its own user, whoever that is).
        self._ids = ids

    def acting_as(self, euid: int, *, real: int | None = None) -> contextlib.AbstractContextManager[None]:
        """Within: effective user ``euid`` (and real user ``real``), for a spawner with attempt
        users (``AttemptIds.acting_as``); nothing changes for one without."""
        if self._ids is None:
            return contextlib.nullcontext()
        return self._ids.acting_as(euid, real=real)

    def _signal_group(self, attempt: _Attempt, sig: int, pid: int | None = None) -> None:
        """``signal_group`` the attempt's group (``pid``: the one it is known by, when that is
        not ``attempt.pid`` yet), as its attempt user: that user's processes alone can be hit,
        whoever has the number of a group long gone."""
        with self._as_its_user(attempt):
            signal_group(attempt.pid if pid is None else pid, sig)

    def _as_its_user(self, attempt: _Attempt) -> contextlib.AbstractContextManager[None]:
        """Within: acting as the attempt's user (its own, when it has no attempt user)."""
        return contextlib.nullcontext() if attempt.uid is None else self.acting_as(attempt.uid)

    def send(self, msg: sp.Message) -> None:
        self._outbox += self._pack(sp.to_wire(msg))

    def serve(self) -> None:
        try:
            self.send(sp.Hello(sp.VERSION, os.getpid()))
            self._flush()  # the worker may be gone already (killed as it started this spawner)
            while self._turn():
                self._flush()
        except (ConnectionResetError, BrokenPipeError):
            pass  # the worker died (kill -9): its tasks die with this spawner, quietly
        finally:
            for attempt in self._attempts.values():
                self._signal_group(attempt, signal.SIGKILL)
            self._attempts.clear()
            self._templates.close()
            if self._adopts and os.getpid() != 1:
                # As the tasks' subreaper, what attempts left outside their groups would go
                # to the host's init as this process exits, and live on (pid 1 of its own
                # namespace, the kernel ends them all).
                with self.acting_as(0):
                    self._end_strays(0)

    def _turn(self) -> bool:
        """One wait for events and what follows from them; False when the worker is gone."""
        for fd, _ in self._poll.poll(self._timeout()):
            if fd == self._control.fileno():
                data = self._control.recv(_READ_SIZE)
                if not data:
                    return False
                self._unpacker.feed(data)
                for raw in self._unpacker:
                    try:
                        msg = sp.from_wire(raw)
                    except ValueError as e:
                        print(f"kiok spawner: ignored {e}", file=sys.stderr)
                        continue
                    self._handle(msg)
                continue
            attempt = self._by_fd.get(fd)
            if attempt is None:
                self._templates.event(fd)
                continue
            if fd == attempt.out_fd:
                try:
                    data = os.read(fd, _READ_SIZE)
                except BlockingIOError:
                    # A stale event: reaping earlier in this batch closed a pidfd whose event
                    # was still in it, and a task started since got its number for this pipe.
                    continue
                if data:
                    self.send(sp.Output(attempt.id, data))
                else:
                    attempt.eof = True
                    self._drop_fd(fd)
            else:
                self._reap_children()
        now = time.monotonic()
        for attempt in list(self._attempts.values()):
            self._tick(attempt, now)
        if self._emptying is not None:
            self._empty_scratch()
        return True

    def _timeout(self) -> float:
        """How long the next wait may last: until the soonest deadline of an attempt, or not
        at all when one can finish now. That happens when a finish reaps (as pid 1) the exit
        of an attempt already looked at in the same turn: no event is left to wake us."""
        if self._emptying is not None:
            return 0.0  # the next slice, once events are seen to
        waits = []
        now = time.monotonic()
        for a in self._attempts.values():
            if a.exited_at is not None and a.eof:
                return 0.0
            if a.reason is None:
                waits.append(a.deadline - now)
            if a.kill_at is not None:
                waits.append(a.kill_at - now)
            if a.exited_at is not None and not a.eof:
                drained = a.exited_at + _PIPE_DRAIN_S
                waits.append((drained if now < drained else drained + _PIPE_DRAIN_S) - now)
            if a.exit_fd is None and a.exited_at is None and a.template is None:
                waits.append(_EXIT_POLL_S)
        return max(0.0, min(waits)) if waits else -1

    def _handle(self, msg: sp.Message) -> None:
        if isinstance(msg, sp.Start):
            if self._scratch is not None and (
                self._emptying is not None or (self._scratch_used and not self._attempts)
            ):
                self._waiting.append(msg)
                if self._emptying is None:
                    self._emptying = self._scratch.emptying()
                self._empty_scratch()
                return
            try:
                self._start(msg)
                self._scratch_used = True  # not before: a start that failed ran nothing
            except OSError as e:
                self.send(sp.Failed(msg.id, e.errno or 0, e.strerror or str(e), _filename(e)))
            except ValueError as e:  # e.g. a NUL byte in an argument or the environment
                self.send(sp.Failed(msg.id, errno.EINVAL, str(e), None))
        elif isinstance(msg, sp.Stop):
            attempt = self._attempts.get(msg.id)
            if attempt is not None:
                self._stop(attempt, "stopped", time.monotonic())
            else:
                self._stop_waiting(msg.id)
        elif isinstance(msg, sp.Template):
            self._templates.configure(msg)

    def _empty_scratch(self) -> None:
        """One slice (``_SCRUB_SLICE_S``) of emptying the private temporary directories and
        IPC; once they are empty, the starts that waited for it go ahead, in order.

        Why here and so: no attempt runs, so no task can see what the last ones left or add
        to it meanwhile (the spawner killed what they left running). An empty directory
        costs an fstat; a task that left a million files (~6 s of removals) holds up the
        attempts waiting to start here, not the loop: stops, the worker's going away and the
        template are seen to between slices (other spawners take the worker's next attempts,
        this one having them pending). Removing less and starting anyway would leave it for
        the next attempt to read."""
        assert self._emptying is not None
        deadline = time.monotonic() + _SCRUB_SLICE_S
        # As root (with attempt users): what attempts left there is theirs, each its own.
        # No task runs meanwhile, and ``_emptying`` follows no link.
        with self.acting_as(0):
            for n, _ in enumerate(self._emptying, 1):
                if n % _SCRUB_CHECK_EVERY == 0 and time.monotonic() >= deadline:
                    return
        self._emptying = None
        self._scratch_used = False
        waiting, self._waiting = self._waiting, []
        for msg in waiting:
            self._handle(msg)

    def _stop_waiting(self, attempt_id: int) -> None:
        """A stop for an attempt waiting for the emptying: it ends, never started."""
        for msg in self._waiting:
            if msg.id == attempt_id:
                self._waiting.remove(msg)
                self.send(sp.Exited(attempt_id, -signal.SIGTERM, False, True, None))
                return

    def _start(self, msg: sp.Start) -> None:
        cwd = msg.cwd  # a str throughout: pathlib costs more than the system calls here
        # Emptied when the last attempt in it ended, but idle since: its name is guessable,
        # so an attempt that ran meanwhile as its user may have left something there for
        # this one (a .pth its python runs, a .gitconfig: HOME is here). With attempt users
        # it was the spawner's user's while idle, and is emptied as it is given.
        env = {**self._base_env, **msg.env}
        template = self._templates.for_start(msg)
        if self._ids is None:
            uid = None
            empty_dir(cwd)
        else:
            uid = self._ids.check(msg.uid)
        if template is not None:
            if uid is not None:
                with self.acting_as(0):
                    self._give_dir(cwd, uid)
            try:
                self._start_forked(msg, template, env, uid)
            except BaseException:
                self._take_back(cwd, uid)
                raise
            return
        since = time.clock_gettime(time.CLOCK_BOOTTIME)
        if uid is None:
            out_fd, pid = self._spawn(msg.argv, env, cwd, msg.script)
        else:
            with self.acting_as(0, real=uid):  # started as its real user (``resetids``)
                self._give_dir(cwd, uid)
                try:
                    out_fd, pid = self._spawn(msg.argv, env, cwd, msg.script, as_real_user=True)
                except BaseException:
                    self._chown_back(cwd)
                    raise
        try:
            exit_fd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            exit_fd = None
        attempt = _Attempt(msg.id, pid, out_fd, exit_fd, cwd, time.monotonic() + msg.timeout_s, msg.grace_s)
        attempt.since = since
        attempt.uid = uid
        self._attempts[msg.id] = attempt
        self._by_pid[pid] = attempt
        self.send(sp.Started(msg.id, pid))
        self._by_fd[out_fd] = attempt
        self._poll.register(out_fd, select.EPOLLIN)
        if exit_fd is not None:
            self._by_fd[exit_fd] = attempt
            self._poll.register(exit_fd, select.EPOLLIN)

    def _give_dir(self, cwd: str, uid: int) -> None:
        """As root: give attempt user ``uid`` its working directory, emptied whoever's it
        was, mode 0700. Idle, it is the spawner's user's (``_finish``); one that is not (an
        earlier spawner's, or made by an older one) is taken from its user first, so that
        nothing of theirs can add to it while it is emptied. Emptied as root (``empty_steps``
        never follows a link, so no task can point it elsewhere). The work root is kiok's:
        nobody can swap the directory under it."""
        assert self._ids is not None
        try:
            fd = os.open(cwd, DIR_FLAGS)
        except FileNotFoundError:
            os.makedirs(cwd, 0o700)
            fd = os.open(cwd, DIR_FLAGS)
        try:
            os.fchmod(fd, 0o700)
            if os.fstat(fd).st_uid != self._ids.uid:
                os.fchown(fd, self._ids.uid, self._ids.gid)
            for _ in empty_steps(fd, frozenset()):
                pass
            os.fchown(fd, uid, self._ids.gid)
        finally:
            os.close(fd)

    def _chown_back(self, cwd: str) -> None:
        """As root: an attempt's directory is the spawner's user's again, once its attempt
        ended or could not start: no attempt user owns an idle directory, so none can put
        anything there for the attempt it goes to next."""
        assert self._ids is not None
        with contextlib.suppress(OSError):
            os.chown(cwd, self._ids.uid, self._ids.gid, follow_symlinks=False)

    def _take_back(self, cwd: str, uid: int | None) -> None:
        """``_chown_back`` for an attempt of ``uid`` that never ran (nothing if it has none)."""
        if uid is not None:
            with self.acting_as(0):
                self._chown_back(cwd)

    def register(self, fd: int) -> None:
        self._poll.register(fd, select.EPOLLIN)

    def unregister(self, fd: int) -> None:
        self._poll.unregister(fd)

    def restart(self, msg: sp.Start) -> None:
        """Start ``msg`` again from the beginning (its template could not start: cold)."""
        self._handle(msg)

    @property
    def base_env(self) -> dict[str, str]:
        return self._base_env

    @property
    def template_user(self) -> int | None:
        return None if self._ids is None else self._ids.uid

    @staticmethod
    def memfd(data: str | bytes) -> int:
        return _memfd(data)

    def _start_forked(
        self, msg: sp.Start, template: fs.TemplateProcess, env: dict[str, str], uid: int | None
    ) -> None:
        """Have ``template`` fork the attempt (now, or once it is ready), as attempt user
        ``uid`` when given; its pid and ``Started`` come with the template's reply."""
        request = fs.encode_request(msg.cwd, env, uid)
        if uid is None and not os.path.isdir(msg.cwd):
            os.makedirs(msg.cwd)
        out_fd, child_out = _output_pipe()
        fds = [child_out]
        try:
            fds.append(_memfd(msg.script or ""))
            fds.append(_memfd(request))
        except BaseException:
            for fd in (out_fd, *fds):
                os.close(fd)
            raise
        now = time.monotonic()
        attempt = _Attempt(
            msg.id, 0, out_fd, None, msg.cwd, now + msg.timeout_s, msg.grace_s, template=template, uid=uid
        )
        attempt.since = time.clock_gettime(time.CLOCK_BOOTTIME)
        self._attempts[msg.id] = attempt
        self._by_fd[out_fd] = attempt
        self._poll.register(out_fd, select.EPOLLIN)
        self._templates.fork(template, msg, fds[0], fds[1], fds[2])

    def forked(self, attempt_id: int, pid: int, pidfd: int | None) -> None:
        """The template forked ``attempt_id`` as ``pid`` (``pidfd``: that process, ours to
        close; None where the template has no pidfds)."""
        attempt = self._attempts.get(attempt_id)
        if attempt is None or attempt.pid:
            if pidfd is not None:
                os.close(pidfd)
            return
        attempt.pid = pid
        if pidfd is not None:
            attempt.pidfd = pidfd
            self._forked[pid] = attempt
        self.send(sp.Started(attempt_id, pid))
        if attempt.reason is not None:  # stopped before the fork was reported
            term = attempt.kill_at is not None and not attempt.killed
            self._signal_group(attempt, signal.SIGTERM if term else signal.SIGKILL, pid)

    def forked_exited(self, attempt_id: int, status: int, error: str | None = None) -> None:
        """A forked attempt's process ended (``error``: or its template died under it)."""
        attempt = self._attempts.get(attempt_id)
        if attempt is not None and attempt.exited_at is None:
            attempt.exit_code = _exit_code(status) if error is None else -signal.SIGKILL
            attempt.error = error
            attempt.exited_at = time.monotonic()
            self._forget_pidfd(attempt)
            if error is not None:
                self._signal_group(attempt, signal.SIGKILL)

    def orphaned(self, attempt_id: int) -> None:
        """The template of ``attempt_id`` died, and was reaped (so its children have been
        re-parented): keep the attempt if its process is now this one's child, found by its
        pidfd (never by pid: that may be anyone's by now), to be waited for like a cold
        one; report its end if it has one; fail it (its group killed) only when its end
        cannot be known: not forked yet as far as we know, no pidfd, or not our child
        (without a pid namespace or subreaper; or reaped by the template, unreported)."""
        attempt = self._attempts.get(attempt_id)
        if attempt is None or attempt.exited_at is not None:
            return
        attempt.template = None  # its timeout and stop now go as a cold attempt's
        pidfd = attempt.pidfd
        if pidfd is None or procfs.pidfd_pid(pidfd) != attempt.pid:
            self.forked_exited(attempt_id, 0, fs.DIED)
            return
        try:
            info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
        except OSError:  # ECHILD: not this process's child
            with contextlib.suppress(OSError), self._as_its_user(attempt):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)  # that very process, if alive
            self.forked_exited(attempt_id, 0, fs.DIED)
            return
        if info is not None:
            self._forked_reaped(attempt, info)
            return
        self._forget_pidfd(attempt, close=False)
        attempt.exit_fd = pidfd
        self._by_pid[attempt.pid] = attempt  # ours until we reap it: the pid cannot be reused
        self._by_fd[pidfd] = attempt
        self._poll.register(pidfd, select.EPOLLIN)

    def _forked_reaped(self, attempt: _Attempt, info: os.waitid_result) -> None:
        attempt.exit_code = -info.si_status if info.si_code != os.CLD_EXITED else info.si_status
        attempt.exited_at = time.monotonic()
        self._forget_pidfd(attempt)

    def _forget_pidfd(self, attempt: _Attempt, *, close: bool = True) -> None:
        """The forked attempt's end is known or its own to report: drop its pidfd."""
        if self._forked.get(attempt.pid) is attempt:
            del self._forked[attempt.pid]
        if attempt.pidfd is not None and close:
            os.close(attempt.pidfd)
        attempt.pidfd = None

    def unstarted(self, attempt_id: int, failure: sp.Failed | None) -> None:
        """A forked attempt that never ran: reported ``failure``, or (None) run cold."""
        attempt = self._attempts.pop(attempt_id, None)
        if attempt is None:
            return
        self._drop_fd(attempt.out_fd)
        if failure is not None:
            self._take_back(attempt.cwd, attempt.uid)
            self.send(failure)

    @staticmethod
    def _spawn(
        argv: list[str], env: dict[str, str], cwd: str, script: str | None, *, as_real_user: bool = False
    ) -> tuple[int, int]:
        """Start ``argv`` in ``cwd`` with ``script`` at ``SCRIPT_FD``: (the read end of its
        output pipe, its pid). ``as_real_user``: as this process's real user (``resetids``),
        this process being root then."""
        script_fd = -1
        out_fd, child_out = _output_pipe()
        try:
            file_actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, child_out, 1),
                (os.POSIX_SPAWN_DUP2, child_out, 2),
            ]
            if script is not None:
                script_fd = _memfd(script)
                file_actions.append((os.POSIX_SPAWN_DUP2, script_fd, SCRIPT_FD))
            try:
                os.chdir(cwd)  # one thread: the new process starts here
            except FileNotFoundError:
                os.makedirs(cwd)
                os.chdir(cwd)
            pid = os.posix_spawn(
                _executable(argv[0], env),
                argv,
                env,
                file_actions=file_actions,
                setsid=True,
                setsigdef=_DEFAULT_SIGNALS,
                resetids=as_real_user,
            )
        except BaseException:
            os.close(out_fd)
            raise
        finally:
            os.close(child_out)
            if script_fd >= 0:
                os.close(script_fd)
        return out_fd, pid

    def _stop(self, attempt: _Attempt, reason: str, now: float) -> None:
        if attempt.reason is None:
            attempt.reason = reason
            self._signal_group(attempt, signal.SIGTERM)
            attempt.kill_at = now + attempt.grace_s

    def _reap_children(self) -> None:
        """Collect every child that has exited: the attempts' main processes and the orphans
        of earlier attempts this process adopted (nobody else would). Each is looked at
        before it is reaped: one with the pid of a forked attempt may be that attempt, its
        template dead but not yet known to be (``orphaned``); if the attempt's pidfd says
        so, its status is the attempt's."""
        while True:
            try:
                peeked = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if peeked is None or peeked.si_pid == 0:
                return
            forked = self._forked.get(peeked.si_pid)
            if forked is not None and forked.pidfd is not None:
                try:
                    info = os.waitid(os.P_PIDFD, forked.pidfd, os.WEXITED | os.WNOHANG)
                except OSError:
                    info = None  # another process: its pid was reused
                if info is not None:
                    self._forked_reaped(forked, info)
                    continue
            try:
                pid, status = os.waitpid(peeked.si_pid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._templates.reaped(pid)
            attempt = self._by_pid.pop(pid, None)
            if attempt is not None:
                attempt.exit_code = _exit_code(status)
                attempt.exited_at = time.monotonic()
                if attempt.exit_fd is not None:
                    self._drop_fd(attempt.exit_fd)
                    attempt.exit_fd = None

    def _tick(self, attempt: _Attempt, now: float) -> None:
        if attempt.reason is None and now >= attempt.deadline:
            self._stop(attempt, "timeout", now)
        if attempt.kill_at is not None and now >= attempt.kill_at:
            self._signal_group(attempt, signal.SIGKILL)
            attempt.kill_at = None
            if attempt.template is not None and attempt.exited_at is None:
                self._unreported(attempt, attempt.template, now)
        if attempt.exited_at is None and attempt.exit_fd is None and attempt.template is None:
            self._reap_children()  # no pidfd on this kernel: polled
        if attempt.exited_at is not None and not attempt.eof and now - attempt.exited_at >= _PIPE_DRAIN_S:
            self._signal_group(attempt, signal.SIGKILL)  # orphans hold the pipe open
            if now - attempt.exited_at >= 2 * _PIPE_DRAIN_S:
                self._end_output(attempt)  # held outside the group: none of the attempt's business
        if attempt.exited_at is not None and attempt.eof:
            self._finish(attempt)

    def _end_output(self, attempt: _Attempt) -> None:
        """Take what is left in the attempt's output pipe and close it, though a process out
        of the attempt's group (its own session) still holds it: the attempt ends anyway."""
        for _ in range(_LAST_READS):
            try:
                data = os.read(attempt.out_fd, _READ_SIZE)
            except BlockingIOError:
                break
            if not data:
                break
            self.send(sp.Output(attempt.id, data))
        attempt.eof = True
        self._drop_fd(attempt.out_fd)

    def _unreported(self, attempt: _Attempt, template: fs.TemplateProcess, now: float) -> None:
        """A forked attempt is killed (or was never forked) and its template has not said
        it ended. A task, the template's user, may have stopped it: it is woken and given a
        grace period; silent after that, it is ended as if it had died (its attempts too).
        One not ready yet (its preloads may take long) is only woken, each grace period."""
        if attempt.killed and template.ready:
            self._templates.end(template)
        else:
            attempt.killed = True
            attempt.kill_at = now + attempt.grace_s
            template.wake()

    def _finish(self, attempt: _Attempt) -> None:
        del self._attempts[attempt.id]
        self._forget_pidfd(attempt)
        if attempt.uid is None:
            signal_group(attempt.pid, signal.SIGKILL)
            self._end_what_is_left()
            empty_dir(attempt.cwd)
        else:
            assert self._ids is not None
            # As its user: its processes alone can be signalled, and what is in its
            # directory is its own. Then, as root, the directory is taken back.
            with self._ids.acting_as(attempt.uid):
                signal_group(attempt.pid, signal.SIGKILL)
                self._end_what_is_left(attempt.uid, forked=attempt.template is not None)
                empty_dir(attempt.cwd)
                self._ids.switch(0)
                self._chown_back(attempt.cwd)
        self.send(
            sp.Exited(
                attempt.id,
                attempt.exit_code,
                attempt.reason == "timeout",
                attempt.reason == "stopped",
                attempt.error,
            )
        )
        if attempt.template is not None:
            self._templates.attempt_done(attempt.template, attempt.id)

    def _end_what_is_left(self, acting_as: int | None = None, *, forked: bool = False) -> None:
        """What the ended attempt left in its group is killed; now what it left outside
        (``_end_strays``), and the orphans of this attempt (or earlier ones) that died are
        reaped. ``acting_as``: the user this process acts as meanwhile (``AttemptIds``)."""
        if self._init:
            self._end_strays(acting_as, forked=forked)
            self._reap_children()

    def _end_strays(self, acting_as: int | None = None, *, forked: bool = True) -> None:
        """Kill what ended attempts left outside their process groups (``setsid``, a daemon's
        double fork), so that nothing of an attempt lives on to see (or write into) the ones
        after it. As pid 1 of the namespace, or the tasks' subreaper, this process adopts
        every orphan: one adopted process is left alone when it is a running attempt's (with
        attempt users: its real user is one of theirs) or, without attempt users, may be one's
        (in the group of one or started after one was: its lineage is lost, so nothing closer
        can be known); the others, and every process under them, are stopped first, top down
        and pass after pass until all are (a stopped process forks no more), then killed."""
        if not self._adopts:
            return
        running = self._attempts.values()
        templates = self._templates.pids()
        known = {a.pid for a in running} | templates
        users = {a.uid for a in running}
        if self._ids is not None:  # whose it is is known: its attempt user's
            ended = self._ids.uids - users

            def left_behind(pid: int) -> bool:
                return procfs.real_uid(pid) in ended

            # A forked attempt can make a child of its template's (clone(CLONE_PARENT)),
            # which no one adopts: when one ends, the templates' children are looked at too
            # (a cold attempt's parent is this process). A template's spare child (not an
            # attempt yet) is its own user's, none of the attempt users.
            looked_at = templates if forked else set()
            if not looked_at and all(pid in known for pid in self._own_children()):
                return  # the common case of a cold attempt: nothing adopted
            assert acting_as is not None
            # This namespace's /proc shows a process to its own user only (``hidepid``):
            # a template's children, and whose each one is, are read as root.
            self._ids.switch(0)
            try:
                if any(pid not in known for pid in self._own_children()) or any(
                    pid not in known and left_behind(pid)
                    for tpl in looked_at
                    for pid in procfs.children(tpl, threads=False)
                ):
                    self._stop_and_kill([self._pid, *looked_at], known, left_behind)
            finally:
                self._ids.switch(acting_as)
            return
        groups = {a.pid for a in running}
        since = min((a.since for a in running), default=math.inf)
        if any(pid not in known for pid in self._own_children()):
            self._stop_and_kill([self._pid], known, lambda pid: _left_behind(pid, groups, since))

    def _stop_and_kill(self, roots: list[int], known: set[int], left_behind: Callable[[int], bool]) -> None:
        """Stop, then kill, the children of ``roots`` that are not ``known`` and were
        ``left_behind``, and everything under them."""
        stopped: set[int] = set()
        for _ in range(_STRAY_PASSES):
            settled = True
            todo = [
                p
                for root in roots
                for p in procfs.children(root)
                if p in stopped or (p not in known and left_behind(p))
            ]
            while todo:
                pid = todo.pop()
                if pid not in stopped:
                    stopped.add(pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSTOP)
                if procfs.state(pid) not in "TtZX":
                    settled = False  # not stopped yet: it may still fork
                todo += procfs.children(pid)
            if settled:
                break
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _own_children(self) -> list[int]:
        """The children of this process (one thread), read on every attempt's end through a
        descriptor kept open: a read at offset 0 produces the list afresh (a page a read:
        read to its end), in ~1 µs against ~5 µs to open the file each time."""
        try:
            if self._children_fd is None:
                path = f"/proc/{self._pid}/task/{self._pid}/children"
                self._children_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            return [int(pid) for pid in procfs.read_all(self._children_fd).split()]
        except OSError:
            return procfs.children(self._pid, threads=False)

    def _drop_fd(self, fd: int) -> None:
        self._poll.unregister(fd)
        del self._by_fd[fd]
        os.close(fd)

    def _flush(self) -> None:
        if self._outbox:
            self._control.sendall(self._outbox)
            self._outbox.clear()


def _output_pipe() -> tuple[int, int]:
    """A task's output pipe: (the spawner's read end, the task's write end). The read end
    never blocks: an event in a batch can be stale (``Spawner._turn``), and a read that
    waited on a silent task would stop every task of this spawner."""
    out_fd, child_out = os.pipe()
    os.set_blocking(out_fd, False)
    return out_fd, child_out


#: Passes over what ended attempts left behind before all of it is stopped (bounded: a
#: process between its SIGSTOP and stopping can fork once more, shown by the next pass).
_STRAY_PASSES = 1000


def _left_behind(pid: int, groups: set[int], since: float) -> bool:
    """Whether adopted process ``pid`` cannot be a running attempt's: in none of their
    ``groups``, and started (to the clock tick) before the first of them (``since``)."""
    fields = procfs.stat_fields(pid)
    if len(fields) <= procfs.START_TIME:
        return False  # gone
    group, started = int(fields[procfs.PGRP]), int(fields[procfs.START_TIME]) * procfs.CLOCK_TICK_S
    return group not in groups and started + procfs.CLOCK_TICK_S < since


def _filename(e: OSError) -> str | None:
    return None if e.filename is None else str(e.filename)


def _memfd(script: str | bytes) -> int:
    """A memory-only file holding ``script`` (close-on-exec, never ``SCRIPT_FD`` itself: a
    dup2 onto itself would keep that flag). Every reader opens ``/dev/fd/3`` afresh, from
    offset 0."""
    fd = os.memfd_create("kiok-task", os.MFD_CLOEXEC)
    try:
        if fd == SCRIPT_FD:
            fd, old = os.dup(fd), fd
            os.close(old)
        data = script.encode() if isinstance(script, str) else script
        written = os.write(fd, data)
        while written < len(data):  # a memfd takes it all at once, unless interrupted
            written += os.write(fd, data[written:])
    except BaseException:
        os.close(fd)
        raise
    return fd


def drop_privileges(uid: int, gid: int, *, keep_root: bool = False) -> None:
    """Become the task user (no supplementary groups) and not dumpable: no task can read
    this process's memory (which holds other attempts' scripts) or attach to it. For good,
    unless ``keep_root``: root stays the saved user id, for the calls that start, signal and
    give directories to attempts of users of their own (``AttemptIds.acting_as``)."""
    import ctypes  # here, while the interpreter's own files can still be read

    os.setgroups([])
    os.setresgid(gid, gid, gid)
    saved = 0 if keep_root else uid
    os.setresuid(uid, uid, saved)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 or os.getresuid() != (uid, uid, saved):
        raise SystemExit("kiok spawner: could not drop privileges")


_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36


def adopt_orphans() -> bool:
    """Become the child subreaper of the tasks: a process they leave behind (their shell
    exited under it, a daemon's double fork) is re-parented to this process rather than to
    the host's init, where it would be out of reach and live on. Isolated without a pid
    namespace, this is how the spawner finds what an ended attempt left outside its group;
    with one, it is pid 1 and adopts them anyway. False when the kernel refuses."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def _ids(arg: str) -> tuple[int, int, AttemptIds | None]:
    """``UID:GID`` (the spawner's user and group) or ``UID:GID:U1,U2,...`` (and its attempt
    users): (uid, gid, the attempt users' ids or None)."""
    if arg.count(":") == 2:
        ids = AttemptIds.parse(arg)
        return ids.uid, ids.gid, ids
    uid, gid = arg.split(":")
    return int(uid), int(gid), None


def main(argv: list[str] | None = None) -> None:
    """``FD [UID:GID[:U1,U2,...]]``: serve the worker on socket ``FD``, as ``UID:GID`` when
    given, and with attempt users ``U1,U2,...`` (``kiok.worker.attempt_ids``) when listed."""
    args = sys.argv[1:] if argv is None else argv
    control = socket.socket(fileno=int(args[0]))
    control.set_inheritable(False)  # tasks must not hold the worker's socket
    # The worker ends the spawner by closing the socket; a task, which may run as the same
    # user, must not end it with SIGINT (handled by Python, so even pid 1 would get it).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    isolated = len(args) > 1
    private = os.environ.pop(PRIVATE_ENV, "").split(",")  # before tasks' environment is taken
    scratch = None
    uid, gid, ids = _ids(args[1]) if isolated else (-1, -1, None)
    if isolated and os.getpid() == 1 and "tmp" in private:  # pid 1 of namespaces kiok made
        try:
            scratch = private_scratch("ipc" in private, uid, gid)
        except OSError as e:  # an LSM may refuse mounts the namespace probe did not try
            print(
                f"kiok spawner: {e.strerror}: tasks of this spawner share the host's temporary "
                "directories and System V IPC",
                file=sys.stderr,
            )
    if isolated and os.getpid() == 1 and ids is not None:  # attempts as users of their own
        try:
            hide_processes()
        except OSError as e:
            print(
                f"kiok spawner: {e.strerror}: tasks of this spawner can read each other's "
                "command lines in /proc",
                file=sys.stderr,
            )
    spawner = Spawner(
        control, adopts=os.getpid() == 1 or (isolated and adopt_orphans()), scratch=scratch, ids=ids
    )
    if isolated:
        drop_privileges(uid, gid, keep_root=ids is not None)
    if ids is not None:
        # What one attempt writes outside its working directory (0700), in the task user's
        # group, the next may change, as attempts sharing one user could.
        os.umask(0o002)
    spawner.serve()


if __name__ == "__main__":
    main()


__all__ = ["SCRIPT_FD", "Spawner", "adopt_orphans", "drop_privileges", "main", "signal_group"]
