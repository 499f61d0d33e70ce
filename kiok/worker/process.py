"""Running one task attempt as a child process, safely and fast.

Task processes are started, watched and stopped by the worker's task spawner, a helper
process (``kiok.worker.spawner``) that ``ProcessRunner`` starts on first use and talks to
over one Unix socket pair. Each attempt gets its own process group, an empty working
directory of its own while it runs (from ``WorkDirs``: emptied and reused rather than
created and removed per attempt) and a closed stdin; its output (stdout and stderr merged,
in order) arrives in chunks of at most 64 KiB, so a task that prints without end never
grows our memory. Stopping — on timeout or cancel — signals the whole group: SIGTERM, a
grace period, then SIGKILL.

Isolated (``kiok.worker.isolation``), the spawner runs as the task user, possibly in a pid
namespace of its own, and each attempt as an attempt user no other running attempt has
(``AttemptUsers``): the directories it is handed are made for the task user here, and the
pids it reports are then its namespace's, never signalled from this side. Without that
namespace (``user`` isolation) a spawner may be stopped (SIGSTOP: by an operator, or by a
task when tasks run as its user), which would hold up every other attempt of it: while a
spawner has attempts, the worker (root) looks at its state about once a second and
continues it; one stopped again and again is ended like a dead one (``_Spawner.watch``).

Why a helper process rather than threads: on this machine kind the threads that spawned
tasks and the event loop fought over the one GIL (each fork, read and wait hands it back
and forth), which cost more CPU per ``true`` task than all of kiok's orchestration.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from kiok.waits import within
from kiok.worker import procfs
from kiok.worker import spawn_protocol as sp
from kiok.worker.attempt_users import AttemptUser, AttemptUsers
from kiok.worker.isolation import NO_ISOLATION, Isolation
from kiok.worker.scratch import empty_dir
from kiok.worker.spawner import signal_group
from kiok.worker.stop import StopSignal
from kiok.worker.user_claims import kill_user_processes

log = logging.getLogger(__name__)

#: How long a new spawner may take to say hello.
_START_TIMEOUT_S = 30.0
#: How much longer than its kill grace a stopped attempt's end is waited for (``_outlive``).
_STOP_MARGIN_S = 2.0
#: How often a spawner with attempts is checked for a stop by a task (``user`` isolation).
_WATCH_INTERVAL_S = 1.0
#: A spawner found stopped this many times within ``_STOPS_WINDOW_S`` is ended, not continued:
#: a task stopping it in a loop would otherwise hold up its other attempts for ever.
_STOPS_TOLERATED = 3
_STOPS_WINDOW_S = 30.0
#: How long a closed spawner a task keeps stopping is given to exit before it is ended.
_CLOSE_TIMEOUT_S = 10.0


class WorkDirs:
    """Working directories for attempts under ``root``: ``take`` gives an empty one that no
    other running attempt has, ``give_back`` returns it once the runner has emptied it.
    With ``owner`` (uid, gid) each is made for that user, mode 0700, in a ``root`` that must
    belong to this process's user (so nobody else can swap what ``take`` works on). A
    ``temporary`` root, this process's alone, goes with ``discard``."""

    def __init__(self, root: Path, owner: tuple[int, int] | None = None, *, temporary: bool = False) -> None:
        self._root = root
        self._owner = owner
        self._temporary = temporary
        self._free: list[Path] = []
        self._made = 0

    def take(self) -> Path:
        if self._free:
            return self._free.pop()
        self._made += 1
        path = self._root / f"{os.getpid()}.{self._made}"
        with contextlib.suppress(FileNotFoundError):
            _remove_tree(path)  # left behind by an earlier process that had this pid
        if self._owner is None:
            path.mkdir(parents=True)
        else:
            path.mkdir(0o700, parents=True)
            os.chown(path, *self._owner)
        return path

    def give_back(self, path: Path) -> None:
        self._free.append(path)

    def discard(self) -> None:
        """Remove a temporary root and all in it (when the worker stops)."""
        if self._temporary:
            with contextlib.suppress(OSError):
                _remove_tree(self._root)


def _remove_tree(path: Path) -> None:
    """Remove directory ``path`` and all in it, as ``empty_dir`` empties an attempt's: at any
    depth, never through a link a task made."""
    empty_dir(str(path))
    path.rmdir()


@dataclass(frozen=True)
class ProcessOutcome:
    exit_code: int | None
    timed_out: bool = False
    stopped: bool = False
    #: Set when the attempt's end is unknown (the spawner died under it).
    error: str | None = None


@dataclass(eq=False)
class _Pending:
    future: asyncio.Future[ProcessOutcome]
    output: Callable[[bytes], None]
    pid: int | None = None
    #: The attempt user it runs as (None: the spawner's).
    uid: int | None = None
    #: Called once the spawner reported its end (or died): gives its attempt user back.
    ended: Callable[[], None] = lambda: None


#: Notices already logged: every spawner reports the same problem (a preload module that
#: cannot be imported), and an operator needs to read it once.
_SAID: set[str] = set()


def _say_once(message: str, *, warning: bool = False) -> None:
    if message not in _SAID and len(_SAID) < 256:
        _SAID.add(message)
        log.log(logging.WARNING if warning else logging.ERROR, "task spawner: %s", message)


@dataclass(eq=False)
class _Spawner(asyncio.Protocol):
    """The worker's end of one spawner process's socket."""

    proc: subprocess.Popen[bytes]
    ready: asyncio.Future[None]
    #: The task pids it reports are its pid namespace's (meaningless on this side).
    pids_are_its_own: bool = False
    #: The group its attempt users run in (the task user's).
    task_gid: int = -1
    pending: dict[int, _Pending] = field(default_factory=dict)
    transport: asyncio.Transport | None = None
    lost: bool = False
    #: Why the worker ended it (None: it was not ended by the worker), told to its attempts.
    ended_because: str | None = None

    def __post_init__(self) -> None:
        self._unpacker = msgpack.Unpacker(raw=False)
        self._pack = msgpack.Packer(use_bin_type=True).pack
        self._out: list[bytes] = []
        self._turn_open = False
        self._watch: asyncio.TimerHandle | None = None
        #: When it was last found stopped (``time.monotonic``), within ``_STOPS_WINDOW_S``.
        self._stops: list[float] = []
        self._warned = False

    def watch(self) -> None:
        """Check, about once a second for as long as it has attempts, whether a task stopped
        this spawner (``user`` isolation: it runs as the task user, without a pid namespace
        whose pid 1 would ignore SIGSTOP): stopped, it starts, times out and reports no
        attempt. A timer rather than a task or a SIGCHLD handler: one ``/proc`` read a second,
        nothing while idle, and asyncio's child watching left alone."""
        if self._watch is None and not self.lost:
            self._watch = asyncio.get_running_loop().call_later(_WATCH_INTERVAL_S, self._check)

    def unwatch(self) -> None:
        """Stop checking (it is gone, or being closed: no timer may outlive the runner)."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _check(self) -> None:
        self._watch = None
        if self.lost:
            return
        if _stopped(self.proc.pid):
            now = time.monotonic()
            self._stops = [t for t in self._stops if now - t < _STOPS_WINDOW_S] + [now]
            if len(self._stops) >= _STOPS_TOLERATED:
                self.end(
                    f"a task stopped it (SIGSTOP) {len(self._stops)} times within "
                    f"{_STOPS_WINDOW_S:g} s, holding up the attempts it runs"
                )
                return
            if not self._warned:  # once per spawner: a task that does it once does it again
                self._warned = True
                log.warning(
                    "the task spawner (pid %d) was stopped, by a task presumably (with `user` "
                    "isolation it may be): continued it",
                    self.proc.pid,
                )
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
        if self.pending:
            self.watch()

    def end(self, why: str) -> None:
        """End this spawner as if it had died (its attempts fail with ``why``): kill what it
        started, then itself, and drop the connection. Its children are read while it is
        still stopped (so none is reaped, and no pid reused, under us): an attempt it started
        but had not yet reported would otherwise outlive it."""
        log.error("ending the task spawner (pid %d): %s", self.proc.pid, why)
        self.ended_because = why
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGSTOP)  # stays so: it reaps nothing while we look
        for pid in _frozen_descendants(self.proc.pid):
            signal_group(pid, signal.SIGKILL)  # an attempt: its own session and group
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # the python template (not a group leader)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        if self.transport is not None:
            self.transport.abort()  # connection_lost fails its attempts, as for a dead one

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, msg: sp.Message, *, now: bool = False) -> None:
        """Messages are written together at the end of the event-loop turn (one write, one
        wake-up of the spawner). With ``now``, unless this turn already wrote, the message
        goes at once: for a spawner with nothing else to do, whose wait is lost time."""
        assert self.transport is not None
        data = self._pack(sp.to_wire(msg))
        if not self._turn_open:
            self._turn_open = True
            asyncio.get_running_loop().call_soon(self._flush)
            if now:
                self.transport.write(data)
                return
        self._out.append(data)

    def _flush(self) -> None:
        self._turn_open = False
        out, self._out = self._out, []
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        self._unpacker.feed(data)
        for raw in self._unpacker:
            msg = sp.from_wire(raw)
            if isinstance(msg, sp.Output):
                entry = self.pending.get(msg.id)
                if entry is not None:
                    entry.output(msg.data)
            elif isinstance(msg, sp.Started):
                entry = self.pending.get(msg.id)
                if entry is not None:
                    entry.pid = msg.pid
            elif isinstance(msg, sp.Exited):
                entry = self.pending.pop(msg.id, None)
                if entry is not None:
                    entry.ended()
                    if not entry.future.done():
                        entry.future.set_result(
                            ProcessOutcome(msg.exit_code, msg.timed_out, msg.stopped, msg.error)
                        )
            elif isinstance(msg, sp.Failed):
                entry = self.pending.pop(msg.id, None)
                if entry is not None:
                    entry.ended()
                    if not entry.future.done():
                        entry.future.set_exception(OSError(msg.errno, msg.message, msg.filename))
            elif isinstance(msg, sp.Hello):
                if msg.version != sp.VERSION:
                    self.ready.set_exception(
                        RuntimeError(f"task spawner speaks version {msg.version}, this worker {sp.VERSION}")
                    )
                elif not self.ready.done():
                    self.ready.set_result(None)
            elif isinstance(msg, sp.Notice):
                _say_once(msg.message, warning=msg.warning)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.unwatch()
        if not self.ready.done():
            self.ready.set_exception(
                RuntimeError(f"task spawner exited on start (exit code {self.proc.poll()})")
            )
        ended = "exited" if self.ended_because is None else f"was ended: {self.ended_because}"
        if self.pending:
            log.error("the task spawner process %s; failing the %d attempts it ran", ended, len(self.pending))
        lost = f"the task spawner process {ended}; the task's processes were killed"
        for entry in self.pending.values():
            # Orphaned: nobody else would stop them (in a pid namespace, the kernel does).
            if entry.pid is not None and not self.pids_are_its_own:
                signal_group(entry.pid, signal.SIGKILL)
            if not entry.future.done():
                entry.future.set_result(ProcessOutcome(None, error=lost))
        entries, self.pending = list(self.pending.values()), {}
        if any(entry.uid is not None for entry in entries):
            try:
                ending = asyncio.get_running_loop().run_in_executor(None, self._end_users, entries)
            except RuntimeError:  # the loop's executor is shut down: the worker is ending
                return  # its users are not handed out again: no attempt will take one
            ending.add_done_callback(functools.partial(_give_back, entries))
        else:
            for entry in entries:
                entry.ended()

    def _end_users(self, entries: list[_Pending]) -> None:
        """In a thread, before the attempts' users go back to the pool: wait for the spawner
        process to exit (its socket closes first; with a pid namespace the kernel ends all in
        it only then), and without one, kill what of those users is left (nothing else
        ended what their attempts left outside their groups)."""
        self.proc.wait()
        if not self.pids_are_its_own:
            for entry in entries:
                if entry.uid is not None:
                    kill_user_processes(entry.uid, self.task_gid)


class ProcessRunner:
    """Runs attempts through ``spawners`` task spawner processes, each started on first use
    (or by ``prewarm``) and again after it died; an attempt goes to the one with the fewest
    running. More than one, because starting a process blocks its spawner until the new
    process has exec'd (~0.5 ms here). ``spawner_env`` is the spawners' environment (which
    tasks inherit), ``isolation`` how they run tasks (as whom, in which namespace), and
    ``python_template`` the warm interpreter each keeps for python tasks (None: none)."""

    def __init__(
        self,
        spawner_env: Mapping[str, str] | None = None,
        *,
        spawners: int = 1,
        isolation: Isolation = NO_ISOLATION,
        python_template: sp.Template | None = None,
    ) -> None:
        self._isolation = isolation
        self._template = python_template
        self._env = isolation.spawner_env(dict(os.environ if spawner_env is None else spawner_env))
        self._spawners: list[_Spawner | None] = [None] * max(1, spawners)
        #: Tasks can stop the spawners (``_Spawner.watch``); in a pid namespace they cannot
        #: (its pid 1 ignores SIGSTOP), and without isolation they are kiok's own user anyway.
        self._watch_stops = isolation.as_user and not isolation.pid_namespace
        self._starting: list[asyncio.Lock] | None = None
        self._ids = itertools.count(1)
        self._turn = 0
        self._users = AttemptUsers(isolation.attempt_users) if isolation.attempt_users else None

    @property
    def spawner_pids(self) -> list[int]:
        """The pids of the processes started for the running spawners (in a pid namespace,
        ``unshare``: killing it kills the spawner and its namespace)."""
        return [s.proc.pid for s in self._spawners if s is not None and not s.lost]

    def prewarm(self) -> None:
        """Start the spawners now rather than on the first attempts (a failure is logged,
        and retried by the next attempt)."""
        for index in range(len(self._spawners)):
            task = asyncio.ensure_future(self._connected(index))
            task.add_done_callback(_log_start_failure)

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        output: Callable[[bytes], None],
        timeout_s: float,
        stop: StopSignal,
        grace_s: float,
        script: str | None = None,
        fork: bool = False,
    ) -> ProcessOutcome:
        """Run to the end in ``cwd`` (an empty directory from ``WorkDirs``, created if
        missing), which is emptied afterwards, with ``env`` added to the spawner's
        environment (only the difference travels; isolated, ``HOME`` is ``cwd``) and
        ``script`` readable at ``/dev/fd/3``. ``output`` is called in order, and every call
        happens before this returns. Raises ``OSError`` when the process cannot start.
        ``fork``: ``argv`` is a python task's (``[<python>, -u, -c, COLD_MAIN]``), which the
        spawner's python template forks rather than starts when it is of that interpreter.
        Isolated, it runs as an attempt user no other running attempt has (``AttemptUsers``)."""
        user, give_back = await self._take_user()
        try:
            spawner = await self._connected(self._least_busy())
        except BaseException:
            give_back()
            raise
        attempt_id = next(self._ids)
        entry = _Pending(asyncio.get_running_loop().create_future(), output)
        if user is not None:
            entry.uid = user.uid
            entry.ended = give_back
        spawner.pending[attempt_id] = entry
        env = {**env, "HOME": str(cwd)} if self._isolation.as_user else dict(env)
        if user is not None:
            env.update(USER=user.name, LOGNAME=user.name)
        uid = None if user is None else user.uid
        start = sp.Start(attempt_id, list(argv), str(cwd), env, timeout_s, grace_s, script, fork, uid)
        spawner.send(start, now=len(spawner.pending) == 1)
        if self._watch_stops:
            spawner.watch()
        forget_stop = stop.on_set(lambda: _send_stop(spawner, attempt_id))
        try:
            return await entry.future
        except asyncio.CancelledError:
            entry.output = _discard  # the caller is gone; the spawner still stops the process
            _send_stop(spawner, attempt_id)
            if attempt_id in spawner.pending:  # its end not reported yet: wait for it
                # The future awaited was cancelled with this task: the end comes to a new one.
                entry.future = asyncio.get_running_loop().create_future()
                await _outlive(entry.future, grace_s + _STOP_MARGIN_S)
            raise
        finally:
            forget_stop()

    async def _take_user(self) -> tuple[AttemptUser | None, Callable[[], None]]:
        """The attempt user the next attempt runs as (None: not isolated as attempt users),
        and what gives it back, once."""
        if self._users is None:
            return None, _nothing
        user = await self._users.take()
        return user, _once(functools.partial(self._users.give_back, user))

    def _least_busy(self) -> int:
        """The spawner running the fewest attempts; ties taken in turn."""

        def load(index: int) -> int:
            spawner = self._spawners[index]
            return 0 if spawner is None or spawner.lost else len(spawner.pending)

        n = len(self._spawners)
        self._turn = (self._turn + 1) % n
        return min(((self._turn + k) % n for k in range(n)), key=load)

    async def _connected(self, index: int) -> _Spawner:
        spawner = self._spawners[index]
        if spawner is not None and not spawner.lost:
            return spawner  # the common case: no lock on the way to every attempt
        if self._starting is None:
            self._starting = [asyncio.Lock() for _ in self._spawners]
        async with self._starting[index]:
            spawner = self._spawners[index]
            if spawner is None or spawner.lost:
                if spawner is not None and spawner.proc.poll() is None:
                    # Lost but not yet reaped (it may still be dying): make sure it is gone
                    # and reap it, so no process is left behind unwaited.
                    with contextlib.suppress(ProcessLookupError):
                        spawner.proc.kill()
                    await asyncio.get_running_loop().run_in_executor(None, spawner.proc.wait)
                spawner = self._spawners[index] = await self._spawn()
            return spawner

    async def _spawn(self) -> _Spawner:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen(
                self._isolation.spawner_argv(
                    [sys.executable, "-m", "kiok.worker.spawner", str(theirs.fileno())]
                ),
                pass_fds=[theirs.fileno()],
                env=self._env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # not in the terminal's group: Ctrl-C reaches the worker only
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        spawner = _Spawner(proc, loop.create_future(), self._isolation.pid_namespace, self._isolation.gid)
        await loop.create_unix_connection(lambda: spawner, sock=ours)
        await within(asyncio.shield(spawner.ready), _START_TIMEOUT_S)
        if self._template is not None:
            spawner.send(self._template, now=True)
        log.debug("task spawner started (pid %d)", proc.pid)
        return spawner

    async def aclose(self) -> None:
        """Stop the spawners (they kill whatever task processes are still running) and reap them."""
        spawners, self._spawners = self._spawners, [None] * len(self._spawners)
        for spawner in spawners:
            if spawner is not None:
                spawner.unwatch()
                if spawner.transport is not None:
                    spawner.transport.close()
                if self._watch_stops:  # one a task stopped would never hear the close
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(spawner.proc.pid, signal.SIGCONT)
        loop = asyncio.get_running_loop()
        for spawner in spawners:
            if spawner is None:
                continue
            if self._watch_stops:
                await _reap_stoppable(spawner)
            else:
                await loop.run_in_executor(None, spawner.proc.wait)


async def _reap_stoppable(spawner: _Spawner) -> None:
    """Reap a closed spawner a task may keep stopping (``user`` isolation): continued again and
    again while it winds down; one still there after ``_CLOSE_TIMEOUT_S`` is ended (a task
    stopping it in a loop would hold the worker's shutdown for ever)."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + _CLOSE_TIMEOUT_S
    while not await loop.run_in_executor(None, _exited_within, spawner.proc, _WATCH_INTERVAL_S / 5):
        if time.monotonic() > deadline:
            spawner.end("it had not exited when the worker shut down (a task keeps stopping it)")
            await loop.run_in_executor(None, spawner.proc.wait)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(spawner.proc.pid, signal.SIGCONT)


def _exited_within(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return True


async def _outlive(ended: asyncio.Future[ProcessOutcome], timeout_s: float) -> None:
    """Wait, at most ``timeout_s``, for a stopped attempt's process to be reported ended (SIGTERM,
    then SIGKILL after its grace). Whoever cancelled it gives its run back to the masters
    next (a worker shutting down or draining, a driver abandoning its run), and the run may
    then be driven elsewhere at once: the same task must not run twice at the same time."""
    with contextlib.suppress(asyncio.CancelledError, Exception):  # a timeout, a lost spawner
        await asyncio.wait_for(ended, timeout_s)


def _send_stop(spawner: _Spawner, attempt_id: int) -> None:
    if not spawner.lost and attempt_id in spawner.pending:
        spawner.send(sp.Stop(attempt_id))


def _stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped by a signal (state ``T``; ``t``, stopped by a
    tracer, is not a task's doing: the spawner is not dumpable)."""
    return procfs.state(pid) == "T"


def _frozen_descendants(root: int) -> list[int]:
    """Every descendant of the stopped process ``root``, each stopped (SIGSTOP) before its
    children are read, so none forks after it is looked at and none is reaped (its parent is
    stopped too): an attempt a python template forked is the template's child, not the
    spawner's, and must not outlive a spawner the worker ends."""
    found: list[int] = []
    todo = procfs.children(root)
    while todo:
        pid = todo.pop()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
        found.append(pid)
        todo += procfs.children(pid)
    return found


def _once(call: Callable[[], None]) -> Callable[[], None]:
    done = False

    def once() -> None:
        nonlocal done
        if not done:
            done = True
            call()

    return once


def _log_start_failure(task: asyncio.Future[_Spawner]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("could not start the task spawner: %s", task.exception())


def _give_back(entries: list[_Pending], ending: asyncio.Future[None]) -> None:
    """The attempts' users back to the pool, unless what was left of them may still run."""
    if ending.cancelled() or ending.exception() is not None:
        log.error(
            "could not end what the attempts of a lost task spawner left (%s): their attempt "
            "users are not handed out again",
            "cancelled" if ending.cancelled() else ending.exception(),
        )
        return
    for entry in entries:
        entry.ended()


def _discard(_: bytes) -> None:
    pass


def _nothing() -> None:
    pass


__all__ = ["ProcessOutcome", "ProcessRunner", "WorkDirs"]
