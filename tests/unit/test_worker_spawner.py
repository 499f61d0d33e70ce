"""The task spawner and its client, with real processes: output order, working directory,
closed stdin, timeouts, stop requests, orphans holding the pipe, start failures, what
happens when either side of the spawner's socket dies, scripts passed by descriptor,
isolated tasks (as the task user, in a pid namespace), and what an isolated attempt leaves
for the next (files, processes in sessions of their own)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kiok.worker import spawn_protocol as sp
from kiok.worker.isolation import prepare_work_root, task_isolation
from kiok.worker.process import ProcessOutcome, ProcessRunner, WorkDirs
from kiok.worker.spawner import signal_group
from kiok.worker.stop import StopSignal
from tests.processes import processes_with


@pytest.fixture
async def runner() -> AsyncIterator[ProcessRunner]:
    r = ProcessRunner()
    yield r
    await r.aclose()


async def _run(
    runner: ProcessRunner,
    script: str,
    cwd: Path,
    *,
    timeout_s: float = 30,
    stop: StopSignal | None = None,
    grace_s: float = 5,
) -> tuple[ProcessOutcome, bytes]:
    out: list[bytes] = []
    outcome = await runner.run(
        ["/bin/sh", "-c", script],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "X": "from-env"},
        output=out.append,
        timeout_s=timeout_s,
        stop=stop or StopSignal(),
        grace_s=grace_s,
    )
    return outcome, b"".join(out)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:  # a zombie is not alive
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False  # reaped since


async def _wait_until(predicate: object, deadline_s: float = 10) -> None:
    assert callable(predicate)
    end = time.monotonic() + deadline_s
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_output_in_order_exit_code_cwd_env_and_closed_stdin(
    runner: ProcessRunner, tmp_path: Path
) -> None:
    script = "echo one; echo two >&2; pwd; echo $X; cat; touch left-behind; exit 3"
    outcome, out = await _run(runner, script, tmp_path)
    assert outcome == ProcessOutcome(3)
    assert out.decode().splitlines() == ["one", "two", str(tmp_path), "from-env"]
    assert list(tmp_path.iterdir()) == []  # emptied before the end is reported


async def test_a_large_output_arrives_whole(runner: ProcessRunner, tmp_path: Path) -> None:
    outcome, out = await _run(runner, "head -c 3000000 /dev/zero", tmp_path)
    assert outcome.exit_code == 0 and len(out) == 3_000_000


async def test_sigpipe_is_back_at_its_default_in_tasks(runner: ProcessRunner, tmp_path: Path) -> None:
    outcome, out = await _run(runner, "yes | head -n 1", tmp_path)
    assert outcome.exit_code == 0 and out == b"y\n"  # no "Broken pipe" from yes


async def test_timeout_terms_the_group_then_kills_what_ignores_it(
    runner: ProcessRunner, tmp_path: Path
) -> None:
    started = time.monotonic()
    outcome, _ = await _run(runner, "trap '' TERM; sleep 30", tmp_path, timeout_s=0.3, grace_s=0.3)
    assert outcome.timed_out and not outcome.stopped and outcome.exit_code == -signal.SIGKILL
    assert time.monotonic() - started < 10


async def test_a_stop_request_ends_the_attempt_as_stopped(runner: ProcessRunner, tmp_path: Path) -> None:
    stop = StopSignal()
    pid_file = tmp_path.parent / "bg.pid"
    run = asyncio.ensure_future(
        _run(runner, f"sleep 60 & echo $! > {pid_file}; wait", tmp_path, stop=stop, grace_s=5)
    )
    await _wait_until(lambda: pid_file.exists() and pid_file.read_text().strip())
    stop.set()
    outcome, _ = await asyncio.wait_for(run, 10)
    assert outcome.stopped and outcome.exit_code == -signal.SIGTERM
    assert not _alive(int(pid_file.read_text()))  # the whole group got the signal


async def test_a_background_child_holding_the_pipe_is_killed(runner: ProcessRunner, tmp_path: Path) -> None:
    pid_file = tmp_path.parent / "orphan.pid"
    started = time.monotonic()
    outcome, out = await _run(runner, f"sleep 60 & echo $! > {pid_file}; echo done", tmp_path)
    assert outcome.exit_code == 0 and out == b"done\n"
    assert time.monotonic() - started < 10
    orphan = int(pid_file.read_text())
    await _wait_until(lambda: not _alive(orphan))  # SIGKILLed: dead once the kernel is done with it


async def test_a_process_that_cannot_start_raises_os_error(runner: ProcessRunner, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await runner.run(
            ["/no/such/interpreter"],
            cwd=tmp_path,
            env={},
            output=lambda _: None,
            timeout_s=5,
            stop=StopSignal(),
            grace_s=1,
        )
    outcome, out = await _run(runner, "echo still fine", tmp_path)  # the spawner lives on
    assert outcome.exit_code == 0 and out == b"still fine\n"


async def test_a_dead_spawner_fails_its_attempts_kills_their_groups_and_is_replaced(
    runner: ProcessRunner, tmp_path: Path
) -> None:
    pid_file = tmp_path.parent / "task.pid"
    run = asyncio.ensure_future(_run(runner, f"echo $$ > {pid_file}; sleep 60", tmp_path))
    await _wait_until(lambda: pid_file.exists() and pid_file.read_text().strip())
    [spawner_pid] = runner.spawner_pids
    os.kill(spawner_pid, signal.SIGKILL)
    outcome, _ = await asyncio.wait_for(run, 10)
    assert outcome.exit_code is None and outcome.error is not None and "spawner" in outcome.error
    await _wait_until(lambda: not _alive(int(pid_file.read_text())))
    outcome, out = await _run(runner, "echo again", tmp_path)
    assert outcome.exit_code == 0 and out == b"again\n"
    assert runner.spawner_pids not in ([], [spawner_pid])


@pytest.mark.parametrize("task", ["sleep 60", "while :; do echo busy; done"], ids=["quiet", "chatty"])
def test_when_the_worker_is_killed_its_tasks_and_spawner_go_too(tmp_path: Path, task: str) -> None:
    """Quietly: a chatty task leaves output the dead worker never read, so the spawner's
    socket is reset rather than closed (the chaos soak found a traceback there)."""
    pid_file = tmp_path / "task.pid"
    work = tmp_path / "work"
    work.mkdir()
    worker = textwrap.dedent(
        f"""
        import asyncio, os, sys
        from pathlib import Path
        from kiok.worker.process import ProcessRunner
        from kiok.worker.stop import StopSignal

        async def main():
            runner = ProcessRunner()
            run = asyncio.ensure_future(runner.run(
                ["/bin/sh", "-c", "echo $$ > {pid_file}; {task}"], cwd=Path("{work}"), env={{}},
                output=lambda _: None, timeout_s=60, stop=StopSignal(), grace_s=1))
            # The shell creates the file before it writes the pid: wait for the line.
            while not (Path("{pid_file}").exists() and Path("{pid_file}").read_text().endswith("\\n")):
                await asyncio.sleep(0.01)
            print(runner.spawner_pids[0], flush=True)
            await run

        asyncio.run(main())
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", worker], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        spawner_pid = int(proc.stdout.readline())
        task_pid = int(pid_file.read_text())
        assert _alive(task_pid) and _alive(spawner_pid)
        proc.kill()
        proc.wait()
        end = time.monotonic() + 10
        while _alive(task_pid) or _alive(spawner_pid):
            assert time.monotonic() < end, "the task or the spawner outlived the worker"
            time.sleep(0.02)
        assert b"Traceback" not in proc.stderr.read()


def test_messages_round_trip_and_garbage_is_refused() -> None:
    start = sp.Start(7, ["/bin/true"], "/tmp", {"A": "1"}, 1.5, 2.0, "echo hi")
    assert sp.from_wire(sp.to_wire(start)) == start
    for garbage in ([], ["x"], [99, 1], [sp.Kind.STOP], "stop", None):
        with pytest.raises(ValueError):
            sp.from_wire(garbage)


async def test_attempts_spread_over_several_spawners(tmp_path: Path) -> None:
    runner = ProcessRunner(spawners=2)
    try:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        results = await asyncio.gather(
            _run(runner, "echo $PPID; sleep 0.3", tmp_path / "a"),
            _run(runner, "echo $PPID; sleep 0.3", tmp_path / "b"),
        )
        parents = {int(out) for _, out in results}
        assert parents == set(runner.spawner_pids) and len(parents) == 2
    finally:
        await runner.aclose()


async def test_a_refused_start_leaves_no_file_and_no_descriptor_behind(
    runner: ProcessRunner, tmp_path: Path
) -> None:
    async def start(argv: list[str]) -> None:
        await runner.run(
            argv,
            cwd=tmp_path,
            env={},
            output=lambda _: None,
            timeout_s=5,
            stop=StopSignal(),
            grace_s=1,
            script="echo hi",
        )

    with pytest.raises(FileNotFoundError):
        await start(["/no/such/interpreter"])
    [spawner_pid] = runner.spawner_pids
    fds = len(os.listdir(f"/proc/{spawner_pid}/fd"))
    for argv in (["/no/such/interpreter"], ["/bin/sh", "-c", "echo a\0b"]):
        for _ in range(5):
            with pytest.raises(OSError):
                await start(argv)
            assert list(tmp_path.iterdir()) == []
    assert len(os.listdir(f"/proc/{spawner_pid}/fd")) == fds


# --- scripts and isolation ---------------------------------------------------------------------

MARK = "zz-script-marker-4711"


async def test_a_script_reaches_its_process_at_fd_3_never_as_an_argument_or_a_file(
    runner: ProcessRunner, tmp_path: Path
) -> None:
    script = textwrap.dedent(
        f"""
        MARK={MARK}
        for who in self parent; do
          pid=$$; [ $who = parent ] && pid=$PPID
          if tr '\\0' ' ' < /proc/$pid/cmdline | grep -q "$MARK"
          then echo "$who-leaks"; else echo "$who-clean"; fi
        done
        ls -A; tr '\\0' ' ' < /proc/$$/cmdline; echo
        """
    )
    outcome, out = await _run_script(runner, ["/bin/sh", "/dev/fd/3"], script, tmp_path)
    assert outcome.exit_code == 0, out
    assert out.decode().splitlines() == ["self-clean", "parent-clean", "/bin/sh /dev/fd/3 "]
    # A script with a shebang is run through its own interpreter, from the same descriptor.
    outcome, out = await _run_script(runner, ["/dev/fd/3"], "#!/bin/sh\necho via-shebang $0\n", tmp_path)
    assert outcome.exit_code == 0 and out == b"via-shebang /dev/fd/3\n"


async def _run_script(
    runner: ProcessRunner, argv: list[str], script: str, cwd: Path, env: dict[str, str] | None = None
) -> tuple[ProcessOutcome, bytes]:
    out: list[bytes] = []
    outcome = await runner.run(
        argv,
        cwd=cwd,
        env=env or {"PATH": os.environ["PATH"]},
        output=out.append,
        timeout_s=30,
        stop=StopSignal(),
        grace_s=1,
        script=script,
    )
    return outcome, b"".join(out)


@contextlib.asynccontextmanager
async def _isolated(mode: str) -> AsyncIterator[tuple[ProcessRunner, WorkDirs]]:
    isolation = task_isolation("user", "kiok-task", 4)
    assert isolation.mode == "user+pidns", "unshare --pid must work where the tests run"
    isolation = dataclasses.replace(isolation, mode=mode)
    root = prepare_work_root("", Path("/nonexistent"), f"spawner-test-{os.getpid()}", isolation)
    runner = ProcessRunner({"PATH": "/usr/bin:/bin", "HOME": "/root"}, isolation=isolation)
    try:
        yield runner, WorkDirs(root, (isolation.uid, isolation.gid))
    finally:
        await runner.aclose()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def isolated() -> AsyncIterator[tuple[ProcessRunner, WorkDirs]]:
    """A runner whose tasks run as the task user in a pid namespace (this suite runs as
    root, as CI does), and working directories made for that user."""
    async with _isolated("user+pidns") as runner_and_dirs:
        yield runner_and_dirs


@pytest.fixture(params=["user+pidns", "user"])
async def isolated_any(request: pytest.FixtureRequest) -> AsyncIterator[tuple[ProcessRunner, WorkDirs]]:
    """As ``isolated``, and also as the task user without a pid namespace (where
    ``unshare --pid`` is refused, in many containers): the spawner is then the tasks'
    subreaper rather than pid 1."""
    async with _isolated(request.param) as runner_and_dirs:
        yield runner_and_dirs


async def test_isolated_tasks_run_as_the_task_user_and_see_only_their_namespace(
    isolated: tuple[ProcessRunner, WorkDirs],
) -> None:
    runner, dirs = isolated
    cwd = dirs.take()
    script = f"""
        id -u; echo "$HOME $USER"; pwd
        cat /proc/{os.getpid()}/environ >/dev/null 2>&1 && echo sees-the-worker || echo no-worker
        ls /proc | grep -c '^[0-9]'
        (kill -INT 1; kill -TERM 1; kill -KILL 1) 2>/dev/null; echo pid-1-stands
        """
    outcome, out = await _run_script(runner, ["/bin/sh", "/dev/fd/3"], script, cwd)
    assert outcome.exit_code == 0, out
    uid, home_user, pwd, worker, processes, stands = out.decode().splitlines()
    user = home_user.split()[1]  # an attempt user of its own, in the task user's group
    assert user.startswith("kiok-task-") and int(uid) == pwd_entry(user) != pwd_entry("kiok-task")
    assert home_user == f"{cwd} {user}" and pwd == str(cwd)
    assert worker == "no-worker"
    assert int(processes) <= 5  # the spawner, this shell, ls, grep (and a late one)
    assert stands == "pid-1-stands"
    outcome, out = await _run_script(runner, ["/bin/sh", "/dev/fd/3"], "echo still-serving", cwd)
    assert outcome.exit_code == 0 and out == b"still-serving\n"


async def test_orphans_of_isolated_tasks_are_reaped_by_their_spawner(
    isolated_any: tuple[ProcessRunner, WorkDirs],
) -> None:
    runner, dirs = isolated_any
    cwd = dirs.take()
    # The subshell's sleep outlives its shell (an orphan adopted by the spawner, this
    # shell's parent), and is killed with the attempt's group when the attempt ends: a
    # zombie unless reaped.
    await _run_script(runner, ["/bin/sh", "/dev/fd/3"], "(sleep 30 &) ; echo left", cwd)
    await _run_script(runner, ["/bin/sh", "/dev/fd/3"], "true", cwd)
    outcome, out = await _run_script(
        runner, ["/bin/sh", "/dev/fd/3"], "ps -o stat= --ppid $PPID | grep -c '^Z' || true", cwd
    )
    assert outcome.exit_code == 0 and out == b"0\n"


#: A first attempt that makes its directory hard to empty: a tree deeper than Python's
#: recursion limit with a path far longer than PATH_MAX, a directory it took every
#: permission off, its working directory opened to everyone, and a file for the next.
HOSTILE_LEFTOVERS = """
import os
os.chmod(".", 0o777)
open("planted", "w").write("from the first attempt")
for _ in range(1500):
    os.mkdir("d" * 100)
    os.chdir("d" * 100)
os.mkdir("locked")
open("locked/f", "w").write("from the first attempt")
os.chmod("locked", 0)
print("left", flush=True)
"""


async def test_what_an_attempt_leaves_never_reaches_the_next_one(
    isolated_any: tuple[ProcessRunner, WorkDirs],
) -> None:
    """The spawner empties an attempt's directory before the next one gets it, whatever the
    task made of it: a recursive removal died on the deep tree (RecursionError), which took
    the spawner down with every attempt it ran, and the next attempt found the leftovers."""
    runner, dirs = isolated_any
    cwd = dirs.take()
    python = shutil.which("python3", path="/usr/bin:/bin")
    assert python is not None
    outcome, out = await _run_script(runner, [python, "/dev/fd/3"], HOSTILE_LEFTOVERS, cwd)
    assert outcome == ProcessOutcome(0) and out == b"left\n", (outcome, out)
    spawner_pid = runner.spawner_pids[0]
    outcome, out = await _run_script(runner, ["/bin/sh", "/dev/fd/3"], "ls -A; stat -c %a .", cwd)
    assert outcome == ProcessOutcome(0) and out == b"700\n", out
    assert runner.spawner_pids == [spawner_pid]  # the same spawner served both


async def test_a_process_that_left_its_session_does_not_outlive_its_attempt(
    isolated_any: tuple[ProcessRunner, WorkDirs],
) -> None:
    """A task's process that made a session of its own (``setsid``) is out of the attempt's
    process group, but must not outlive the attempt: it would see (and write into) the
    attempts that come after it."""
    runner, dirs = isolated_any
    cwd = dirs.take()
    escape = "setsid sh -c 'sleep 2; echo planted > planted' </dev/null >/dev/null 2>&1 & sleep 0.5"
    outcome, _ = await _run_script(runner, ["/bin/sh", "/dev/fd/3"], escape, cwd)
    assert outcome == ProcessOutcome(0)
    outcome, out = await _run_script(runner, ["/bin/sh", "/dev/fd/3"], "sleep 3; ls -A", cwd)
    assert outcome == ProcessOutcome(0) and out == b"", out


async def test_a_running_attempts_own_session_lives_while_other_attempts_end(
    isolated_any: tuple[ProcessRunner, WorkDirs],
) -> None:
    """What a running attempt started in a session of its own (a daemon it uses) is not
    killed when another attempt ends: it may be that running attempt's."""
    runner, dirs = isolated_any
    mine, other = dirs.take(), dirs.take()
    script = "setsid sh -c 'sleep 2; echo alive > alive' </dev/null >/dev/null 2>&1 & sleep 3.5; cat alive"
    running = asyncio.ensure_future(_run_script(runner, ["/bin/sh", "/dev/fd/3"], script, mine))
    await asyncio.sleep(1.0)
    outcome, _ = await _run_script(runner, ["/bin/sh", "/dev/fd/3"], "true", other)
    assert outcome == ProcessOutcome(0)
    outcome, out = await asyncio.wait_for(running, 30)
    assert outcome == ProcessOutcome(0) and out == b"alive\n", (outcome, out)


async def test_what_an_ended_attempt_left_is_killed_though_another_attempt_runs(
    isolated_any: tuple[ProcessRunner, WorkDirs],
) -> None:
    """What an ended attempt left in a session of its own used to live on while an attempt
    that started before it still ran (it might have been that one's daemon), as the user
    later attempts run as. Its attempt user now says whose it is: it dies as its attempt
    ends, and the other attempt runs on."""
    runner, dirs = isolated_any
    seconds = f"5{os.getpid() % 10**5}.75"  # a sleep no other process runs
    out: list[bytes] = []
    running = asyncio.ensure_future(
        runner.run(
            ["/bin/sh", "/dev/fd/3"],
            cwd=dirs.take(),
            env={"PATH": os.environ["PATH"]},
            output=out.append,
            timeout_s=30,
            stop=StopSignal(),
            grace_s=1,
            script="echo started; sleep 20; echo ran-on",
        )
    )
    try:
        deadline = time.monotonic() + 20
        while b"started" not in b"".join(out):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        escape = (  # ends once the sleep is in its own session
            f"setsid sh -c 'echo $$ > daemon; exec sleep {seconds}' </dev/null >/dev/null 2>&1 &\n"
            "while [ ! -s daemon ]; do sleep 0.01; done"
        )
        outcome, _ = await _run_script(runner, ["/bin/sh", "/dev/fd/3"], escape, dirs.take())
        assert outcome == ProcessOutcome(0)
        deadline = time.monotonic() + 5
        while processes_with(["sleep", seconds]):
            assert time.monotonic() < deadline, "what the ended attempt left lives on"
            await asyncio.sleep(0.02)
        assert not running.done()
    finally:
        running.cancel()
        with contextlib.suppress(BaseException):
            await running
        for pid in processes_with(["sleep", seconds]):
            os.kill(pid, signal.SIGKILL)


async def test_a_process_out_of_the_group_holding_the_output_does_not_hold_the_attempt(
    isolated_any: tuple[ProcessRunner, WorkDirs],
) -> None:
    """A process in a session of its own that keeps the attempt's output pipe open: the
    attempt used to wait for the end of its output for ever (past its timeout, the spawner
    spinning), and the process lived on."""
    runner, dirs = isolated_any
    cwd = dirs.take()
    started = time.monotonic()
    script = "setsid sleep 60.25 & sleep 0.5; echo done"  # without a pid namespace, ps shows the host
    outcome, out = await asyncio.wait_for(_run_script(runner, ["/bin/sh", "/dev/fd/3"], script, cwd), 30)
    assert outcome == ProcessOutcome(0) and out == b"done\n", (outcome, out)
    assert time.monotonic() - started < 10
    outcome, out = await _run_script(
        runner, ["/bin/sh", "/dev/fd/3"], "ps -eo args | grep -c '^sleep 60.25'", cwd
    )
    assert out == b"0\n", out


def pwd_entry(name: str) -> int:
    import pwd

    return pwd.getpwnam(name).pw_uid


def test_a_stale_readiness_event_never_blocks_the_spawner(tmp_path: Path) -> None:
    """epoll hands the spawner a batch of events at once. Reaping one exit can close another
    attempt's pidfd whose event is still in the batch, and a task started by a message of
    the same batch can get that descriptor number for its output pipe: the stale event then
    names the new task's pipe while it has written nothing. A blocking read there froze the
    spawner, and every task it runs (their output, their exits, their timeouts), for as long
    as that task stayed silent. Here the stale event is handed over directly."""
    from kiok.worker.spawner import Spawner

    ours, theirs = socket.socketpair()
    spawner = Spawner(ours)
    try:
        start = sp.Start(1, ["/bin/sh", "-c", "sleep 30"], str(tmp_path / "w"), {}, 60.0, 1.0, None)
        spawner._handle(start)
        silent = spawner._attempts[1].out_fd
        spawner._poll = _OneBatch(spawner._poll, [(silent, select.EPOLLIN)])  # type: ignore[assignment]
        began = time.monotonic()
        assert spawner._turn()
        assert time.monotonic() - began < 5, "the spawner blocked on a silent task's pipe"
        assert 1 in spawner._attempts and not spawner._attempts[1].eof
    finally:
        for attempt in spawner._attempts.values():
            os.killpg(attempt.pid, signal.SIGKILL)
            os.waitpid(attempt.pid, 0)
        ours.close()
        theirs.close()


class _OneBatch:
    """An epoll whose next ``poll`` returns the given batch (then the real one's)."""

    def __init__(self, real: select.epoll, batch: list[tuple[int, int]]) -> None:
        self._real, self._batch = real, batch

    def poll(self, timeout: float = -1) -> list[tuple[int, int]]:
        batch, self._batch = self._batch, []
        return batch or self._real.poll(timeout)

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)


def test_an_exit_reaped_by_another_attempts_finish_is_reported_at_once(tmp_path: Path) -> None:
    """As pid 1 of its namespace, the spawner reaps every exited child when an attempt
    finishes. An attempt whose output had ended, and which was looked at earlier in the same
    turn, could be reaped there: nothing was left to wake the spawner, which slept until that
    attempt's timeout, and its run stalled (found by polled diamond runs, one in ~500)."""
    from kiok.worker.spawner import Spawner

    ours, theirs = socket.socketpair()
    spawner = Spawner(ours)
    spawner._init = True  # reaps every child on a finish, as pid 1 of a namespace does
    try:
        # a: ends its output at once, exits a little later; b: exits at once.
        script_a = "exec >/dev/null 2>&1; sleep 0.3"
        spawner._handle(sp.Start(1, ["/bin/sh", "-c", script_a], str(tmp_path / "a"), {}, 60.0, 1.0, None))
        spawner._handle(sp.Start(2, ["/bin/sh", "-c", "true"], str(tmp_path / "b"), {}, 60.0, 1.0, None))
        a, b = spawner._attempts[1], spawner._attempts[2]
        os.waitid(os.P_PID, b.pid, os.WEXITED | os.WNOWAIT)
        spawner._reap_children()  # b's exit noticed (a still sleeps)
        assert b.exited_at is not None and a.exited_at is None
        os.waitid(os.P_PID, a.pid, os.WEXITED | os.WNOWAIT)  # a exited, not reaped yet
        # One turn: both pipes end; a is looked at first (not exited yet as far as it knows),
        # then b finishes, and its finish reaps a.
        spawner._poll = _OneBatch(spawner._poll, [(a.out_fd, select.EPOLLIN), (b.out_fd, select.EPOLLIN)])  # type: ignore[assignment]
        assert spawner._turn()
        assert 2 not in spawner._attempts and a.exited_at is not None and a.eof
        assert spawner._timeout() == 0, "a's exit is known: nothing else will wake the spawner"
        began = time.monotonic()
        assert spawner._turn()
        assert 1 not in spawner._attempts and time.monotonic() - began < 5
    finally:
        for attempt in spawner._attempts.values():
            signal_group(attempt.pid, signal.SIGKILL)
        ours.close()
        theirs.close()


def test_a_spawner_whose_worker_is_gone_before_its_greeting_ends_quietly(tmp_path: Path) -> None:
    """A worker killed while it started a spawner: the spawner's first message (its
    greeting) finds the socket closed. It ends without a traceback, as it does when the
    worker goes later (a chaos soak found one in a worker's log)."""
    from kiok.worker.spawner import Spawner

    ours, theirs = socket.socketpair()
    theirs.close()
    spawner = Spawner(ours)
    spawner.serve()  # returns: no BrokenPipeError
    ours.close()


async def test_a_directory_whose_attempt_could_not_start_is_not_left_to_its_user(
    isolated: tuple[ProcessRunner, WorkDirs],
) -> None:
    """An attempt's directory is given to its attempt user as it starts. One that cannot
    start (a program that is not there) must take it back, as an ended one does: an idle
    directory its user still owned could be entered by that user's next attempt, which
    could leave something there for whoever the directory goes to next."""
    runner, dirs = isolated
    cwd = dirs.take()
    with pytest.raises(FileNotFoundError):
        await _run_script(runner, ["/nonexistent/kiok-interpreter"], "true", cwd)
    assert cwd.stat().st_uid == pwd_entry("kiok-task")
    outcome, _ = await _run_script(runner, ["/bin/sh", "/dev/fd/3"], "true", cwd)
    assert outcome == ProcessOutcome(0) and cwd.stat().st_uid == pwd_entry("kiok-task")
