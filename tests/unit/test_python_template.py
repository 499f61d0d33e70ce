"""Python tasks forked from a warm template (``kiok.worker.forkserver``), with real spawner,
template and task processes, isolated as the task user in a pid namespace (the suite runs as
root, as CI does): each attempt is a fresh fork that behaves like ``python -u /dev/fd/3``,
nothing one attempt changes reaches the next, timeouts and stops kill the attempt's group, a
template that dies is replaced and its attempts run on (one a task stopped is continued, or
ended), it is recycled after ``max_tasks`` forks, and preload errors are said at start."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from kiok.config import Settings
from kiok.errors import InvalidInput
from kiok.roots.common import python_template
from kiok.worker import forkserver as fs
from kiok.worker import spawn_protocol as sp
from kiok.worker.isolation import prepare_work_root, python_for_tasks, task_isolation
from kiok.worker.process import ProcessOutcome, ProcessRunner, WorkDirs
from kiok.worker.stop import StopSignal

Factory = Callable[..., ProcessRunner]


@pytest.fixture
async def isolated() -> AsyncIterator[tuple[Factory, WorkDirs, str]]:
    """Makes runners whose tasks run as the task user in a pid namespace, with a python
    template of the interpreter python tasks use; working directories for that user.

    Without attempt users: every task runs as the task user, as its template does, so that a
    task can kill or stop its template and the child forked ahead. That is how these tests
    make a template die or stop under its attempts (with attempt users no task can:
    ``test_with_attempt_users_no_task_can_signal_its_template``; a template can still die
    or stop for reasons of its own: the OOM killer, an operator, a debugger)."""
    async for made in _isolated(0):
        yield made


@pytest.fixture
async def with_attempt_users() -> AsyncIterator[tuple[Factory, WorkDirs, str]]:
    """As ``isolated``, each attempt as an attempt user of its own, as a worker runs them."""
    async for made in _isolated(4):
        yield made


async def _isolated(attempt_users: int) -> AsyncIterator[tuple[Factory, WorkDirs, str]]:
    isolation = task_isolation("user", "kiok-task", attempt_users)
    assert isolation.mode == "user+pidns", "unshare --pid must work where the tests run"
    python = python_for_tasks("", sys.executable, isolation)
    root = prepare_work_root("", Path("/nonexistent"), f"template-test-{os.getpid()}", isolation)
    runners: list[ProcessRunner] = []

    def make(
        preload: tuple[str, ...] = (), max_tasks: int = 1000, env: dict[str, str] | None = None
    ) -> ProcessRunner:
        runner = ProcessRunner(
            env or {"PATH": "/usr/bin:/bin", "HOME": "/root"},
            isolation=isolation,
            spawners=1,
            python_template=sp.Template(python, list(preload), max_tasks),
        )
        runners.append(runner)
        return runner

    try:
        yield make, WorkDirs(root, (isolation.uid, isolation.gid)), python
    finally:
        for runner in runners:
            await runner.aclose()
        shutil.rmtree(root, ignore_errors=True)


async def _python(
    runner: ProcessRunner,
    python: str,
    script: str,
    cwd: Path,
    *,
    timeout_s: float = 60,
    stop: StopSignal | None = None,
    env: dict[str, str] | None = None,
) -> tuple[ProcessOutcome, str]:
    out: list[bytes] = []
    outcome = await runner.run(
        [python, "-u", "/dev/fd/3"],
        cwd=cwd,
        env=env or {"PATH": "/usr/bin:/bin"},
        output=out.append,
        timeout_s=timeout_s,
        stop=stop or StopSignal(),
        grace_s=1,
        script=script,
        fork=True,
    )
    return outcome, b"".join(out).decode()


#: Prints who runs it: its parent's command line (the template's, when forked) and more. An
#: attempt user is shown no other user's process: then its parent is the template unless it
#: is the spawner, pid 1 of its namespace.
WHOAMI = """
import os, sys
try:
    forked = b"/dev/fd/3" in open(f"/proc/{os.getppid()}/cmdline", "rb").read().split(b"\\0")
except FileNotFoundError:
    forked = os.getppid() != 1
print("template" if forked else "cold", os.getppid(), os.getuid())
"""


def _gone_from_namespace(runner: ProcessRunner, pid: int, deadline_s: float = 10) -> bool:
    """Whether ``pid`` dies within the deadline (a SIGKILL'd process takes a moment to go)."""
    end = time.monotonic() + deadline_s
    while _alive_in_namespace(runner, pid):
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def _alive_in_namespace(runner: ProcessRunner, pid: int) -> bool:
    """Whether ``pid`` of the runner's (one) spawner namespace is alive: asked of /proc there
    through the spawner's pid 1, whose root is the namespace's /proc mount."""
    (spawner,) = runner.spawner_pids
    children = Path(f"/proc/{spawner}/task/{spawner}/children").read_text().split()
    for child in children:  # unshare's child: the spawner, pid 1 inside
        try:
            status = Path(f"/proc/{child}/root/proc/{pid}/status").read_text()
        except OSError:
            continue
        return "State:\tZ" not in status
    return False


async def test_each_attempt_is_a_fresh_fork_that_runs_like_a_new_interpreter(
    isolated: tuple[Factory, WorkDirs, str],
) -> None:
    make, dirs, python = isolated
    runner = make(preload=("colorsys",))
    cwd = dirs.take()
    outcome, out = await _python(runner, python, WHOAMI, cwd)
    assert outcome == ProcessOutcome(0), out
    kind, parent, uid = out.split()
    assert kind == "template" and int(uid) != 0
    # A module-level change, a new module and an open file in one attempt: none in the next.
    change = """
import sys, colorsys, json
colorsys.changed = "by attempt 1"; json.changed = 1
sys.modules["injected"] = colorsys
kept = open("/dev/null")
"""
    assert (await _python(runner, python, change, cwd))[0].exit_code == 0
    check = """
import os, sys, colorsys
print(getattr(colorsys, "changed", "clean"), "json" in sys.modules, "injected" in sys.modules)
own = __file__ == f"/proc/{os.getpid()}/fd/3"
print(__name__, own, sys.argv, os.getcwd() == os.environ["HOME"], os.environ["X"])
print(sorted(k for k in globals() if not k.startswith("__")))
print(len(os.listdir("/proc/self/fd")))
"""
    outcome, out = await _python(runner, python, check, cwd, env={"PATH": "/usr/bin:/bin", "X": "own-env"})
    assert outcome.exit_code == 0, out
    lines = out.splitlines()
    assert lines[0] == "clean False False", out  # colorsys preloaded, unchanged; json never
    # __file__: the script through the attempt's own descriptor, as its other processes see it.
    assert lines[1] == "__main__ True ['/dev/fd/3'] True own-env"
    assert lines[2] == "['colorsys', 'os', 'own', 'sys']"
    assert int(lines[3]) == 5  # stdin, stdout, stderr, the script at 3, listdir's own
    # The same exit statuses and error lines as a new interpreter.
    outcome, out = await _python(runner, python, "raise ValueError('bad input')", cwd)
    assert outcome.exit_code == 1 and out.splitlines()[-1] == "ValueError: bad input", out
    assert 'File "/dev/fd/3", line 1, in <module>' in out and "_run" not in out
    # A script that does not compile: no traceback, as the interpreter prints it (the
    # template's own frame showed, found by the security probe of session 28).
    outcome, out = await _python(runner, python, "x = (\n", cwd)
    assert outcome.exit_code == 1 and out.startswith('  File "/dev/fd/3", line 1\n'), out
    assert "Traceback" not in out and out.endswith("SyntaxError: '(' was never closed\n"), out
    assert (await _python(runner, python, "import sys; sys.exit(7)", cwd))[0].exit_code == 7
    outcome, out = await _python(runner, python, "import atexit; atexit.register(print, 'at exit')", cwd)
    assert outcome.exit_code == 0 and out == "at exit\n"
    outcome, out = await _python(runner, python, WHOAMI, cwd)
    assert out.split()[:2] == ["template", parent]  # still the same template
    assert list(cwd.iterdir()) == []


async def test_timeout_and_stop_kill_a_forked_attempts_group(isolated: tuple[Factory, WorkDirs, str]) -> None:
    make, dirs, python = isolated
    runner = make()
    cwd = dirs.take()
    script = """
import signal, subprocess, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "300"])
print(child.pid, flush=True)
time.sleep(300)
"""
    started = time.monotonic()
    outcome, out = await _python(runner, python, script, cwd, timeout_s=1.5)
    assert outcome.timed_out and outcome.exit_code == -9, (outcome, out)
    assert time.monotonic() - started < 30
    assert _gone_from_namespace(runner, int(out.split()[0]))  # the background child went too
    stop = StopSignal()
    attempt = asyncio.ensure_future(_python(runner, python, script, cwd, stop=stop))
    await asyncio.sleep(1.0)
    stop.set()
    outcome, out = await asyncio.wait_for(attempt, 30)
    assert outcome.stopped and not outcome.timed_out, (outcome, out)
    assert _gone_from_namespace(runner, int(out.split()[0]))


#: Runs until its template is gone (it is then the spawner's child), with a child of its
#: own in its group, and prints that child's pid first.
ORPHAN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
template = os.getppid()
print(subprocess.Popen(["sleep", "300"]).pid, flush=True)
deadline = time.monotonic() + 30
while os.getppid() == template and time.monotonic() < deadline:
    time.sleep(0.01)
print("orphaned", flush=True)
time.sleep({sleep})
sys.exit(3)
"""


async def test_a_dead_template_is_replaced_and_its_attempts_run_on(
    isolated: tuple[Factory, WorkDirs, str],
) -> None:
    """A task runs as the same user as its template, so it can kill it (or stop it: below).
    The attempts it had forked are then the spawner's children and are kept: each ends when
    it would have, with its own status and all its output, or by its timeout or stop (its
    group killed); new attempts get a new template."""
    make, dirs, python = isolated
    runner = make()
    outcome, out = await _python(runner, python, WHOAMI, dirs.take())
    first_template = out.split()[1]
    ends = asyncio.ensure_future(_python(runner, python, ORPHAN.format(sleep=0), dirs.take()))
    times_out = asyncio.ensure_future(
        _python(runner, python, ORPHAN.format(sleep=300), dirs.take(), timeout_s=5)
    )
    stop = StopSignal()
    stopped = asyncio.ensure_future(_python(runner, python, ORPHAN.format(sleep=300), dirs.take(), stop=stop))
    await asyncio.sleep(1.0)
    killer = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('killed')"
    outcome, out = await asyncio.wait_for(_python(runner, python, killer, dirs.take()), 30)
    assert outcome == ProcessOutcome(0) and out == "killed\n", (outcome, out)
    outcome, out = await asyncio.wait_for(ends, 30)
    assert outcome == ProcessOutcome(3) and out.split()[1:] == ["orphaned"], (outcome, out)
    await asyncio.sleep(0.5)
    stop.set()
    outcome, out = await asyncio.wait_for(stopped, 30)
    assert outcome == ProcessOutcome(-9, stopped=True) and out.split()[1:] == ["orphaned"], (outcome, out)
    assert _gone_from_namespace(runner, int(out.split()[0]))
    outcome, out = await asyncio.wait_for(times_out, 30)
    assert outcome == ProcessOutcome(-9, timed_out=True) and out.split()[1:] == ["orphaned"], (outcome, out)
    assert _gone_from_namespace(runner, int(out.split()[0]))
    outcome, out = await _python(runner, python, WHOAMI, dirs.take())
    assert outcome.exit_code == 0 and out.split()[0] == "template" and out.split()[1] != first_template


async def test_an_attempt_whose_end_cannot_be_known_fails_cleanly(tmp_path: Path) -> None:
    """Without isolation the spawner is neither pid 1 nor a subreaper: a dead template's
    attempts are re-parented elsewhere, their ends cannot be known. They fail, their groups
    killed, and the template is replaced."""
    runner = ProcessRunner(spawners=1, python_template=sp.Template(sys.executable, [], 1000))
    try:
        outcome, out = await _python(runner, sys.executable, WHOAMI, tmp_path / "1")
        first_template = out.split()[1]
        running = asyncio.ensure_future(
            _python(runner, sys.executable, ORPHAN.format(sleep=300), tmp_path / "2")
        )
        await asyncio.sleep(1.0)
        killer = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"
        await asyncio.wait_for(_python(runner, sys.executable, killer, tmp_path / "3"), 30)
        outcome, out = await asyncio.wait_for(running, 30)
        assert outcome.error == fs.DIED and outcome.exit_code == -9, (outcome, out)
        assert _gone(int(out.split()[0]))
        outcome, out = await _python(runner, sys.executable, WHOAMI, tmp_path / "4")
        assert outcome.exit_code == 0 and out.split()[0] == "template" and out.split()[1] != first_template
    finally:
        await runner.aclose()


def _gone(pid: int, deadline_s: float = 10) -> bool:
    """Whether host process ``pid`` dies (or is a zombie) within the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            if "State:\tZ" in Path(f"/proc/{pid}/status").read_text():
                return True
        except OSError:
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.02)


#: Signals the template's other child, the one forked ahead for the next attempt (a task
#: runs as the same user as it), and prints its pid.
SIGNAL_THE_SPARE = """
import os, signal, time
template = os.getppid()
deadline = time.monotonic() + 10
while True:  # the template forks it once this attempt is on its way
    children = open(f"/proc/{template}/task/{template}/children").read().split()
    spares = [int(p) for p in children if int(p) != os.getpid()]
    if spares or time.monotonic() > deadline:
        break
    time.sleep(0.005)
(spare,) = spares
os.kill(spare, signal.SIG{name})
print(spare, flush=True)
"""


@pytest.mark.parametrize("signal_name", ["KILL", "STOP"])
async def test_the_child_forked_ahead_survives_what_a_task_does_to_it(
    isolated: tuple[Factory, WorkDirs, str], signal_name: str
) -> None:
    """The template forks each attempt's child ahead, and a task may signal it: killed, the
    next attempt gets a child forked on the spot; stopped, it is continued when it gets its
    attempt. Either way the next attempt runs, and in a child of the same template."""
    make, dirs, python = isolated
    runner = make()
    outcome, out = await _python(runner, python, WHOAMI, dirs.take())
    template = out.split()[1]
    outcome, out = await _python(runner, python, SIGNAL_THE_SPARE.replace("{name}", signal_name), dirs.take())
    assert outcome.exit_code == 0, (outcome, out)
    for _ in range(2):
        outcome, out = await asyncio.wait_for(_python(runner, python, WHOAMI, dirs.take()), 30)
        assert outcome.exit_code == 0 and out.split()[:2] == ["template", template], (outcome, out)


async def test_a_template_a_task_stopped_still_serves_the_next_attempts(
    isolated: tuple[Factory, WorkDirs, str],
) -> None:
    """A task can also stop its template (SIGSTOP, allowed to the same user): the template
    then reports neither that task's end nor forks for the attempts after it, which hung
    until their timeouts (30 minutes by default), every python attempt of the spawner."""
    make, dirs, python = isolated
    runner = make()
    stopper = "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\nprint('stopped', flush=True)"
    first = asyncio.ensure_future(_python(runner, python, stopper, dirs.take()))
    await asyncio.sleep(1.0)
    outcome, out = await asyncio.wait_for(_python(runner, python, WHOAMI, dirs.take()), 30)
    assert outcome.exit_code == 0 and out.split()[0] == "template", (outcome, out)
    outcome, out = await asyncio.wait_for(first, 30)
    assert outcome.exit_code == 0 and out == "stopped\n", (outcome, out)


async def test_a_template_kept_stopped_is_replaced_once_an_attempt_of_it_timed_out(
    isolated: tuple[Factory, WorkDirs, str],
) -> None:
    """A process a task left outside its group (its own session) that keeps the template
    stopped: the attempt times out, its end may never come from the template, which is then
    ended (its attempts with it) and replaced; what the task left is killed with it."""
    make, dirs, python = isolated
    runner = make()
    keeper = """
import os, signal, time
template = os.getppid()
if os.fork() == 0:
    os.setsid()
    while True:
        os.kill(template, signal.SIGSTOP)
        time.sleep(0.001)
time.sleep(300)
"""
    outcome, _ = await asyncio.wait_for(_python(runner, python, keeper, dirs.take(), timeout_s=1.5), 30)
    assert outcome.timed_out, outcome
    outcome, out = await asyncio.wait_for(_python(runner, python, WHOAMI, dirs.take()), 30)
    assert outcome.exit_code == 0 and out.split()[0] == "template", (outcome, out)


async def test_with_attempt_users_no_task_can_signal_its_template(
    with_attempt_users: tuple[Factory, WorkDirs, str],
) -> None:
    """Each forked attempt runs as an attempt user of its own, not as its template: a task
    can no longer kill or stop its template, nor the child forked ahead for the next attempt
    (which becomes that attempt's user only once it has the attempt)."""
    make, dirs, python = with_attempt_users
    runner = make()
    _, out = await _python(runner, python, WHOAMI, dirs.take())
    kind, template, uid = out.split()
    assert kind == "template" and int(uid) != pwd.getpwnam("kiok-task").pw_uid, out
    for name in ("KILL", "STOP"):
        killer = f"import os, signal\nos.kill(os.getppid(), signal.SIG{name})"
        outcome, out = await asyncio.wait_for(_python(runner, python, killer, dirs.take()), 30)
        assert outcome.exit_code == 1 and "PermissionError" in out, (outcome, out)
        outcome, out = await asyncio.wait_for(
            _python(runner, python, SIGNAL_THE_SPARE.replace("{name}", name), dirs.take()), 30
        )
        # Not even found: /proc shows an attempt user its own processes only.
        assert outcome.exit_code == 1 and "FileNotFoundError" in out, (outcome, out)
        guess = f"import os, signal\nos.kill({template} + 1, signal.SIG{name})"  # the spare, likely
        outcome, out = await asyncio.wait_for(_python(runner, python, guess, dirs.take()), 30)
        assert outcome.exit_code == 1 and ("PermissionError" in out or "ProcessLookupError" in out), out
    uids = set()
    for _ in range(4):
        outcome, out = await asyncio.wait_for(_python(runner, python, WHOAMI, dirs.take()), 30)
        assert outcome.exit_code == 0 and out.split()[:2] == ["template", template], (outcome, out)
        uids.add(int(out.split()[2]))
    assert len(uids) == 4, uids  # each in turn: the user idle the longest


async def test_a_template_is_recycled_after_max_tasks_forks(isolated: tuple[Factory, WorkDirs, str]) -> None:
    make, dirs, python = isolated
    runner = make(max_tasks=2)
    cwd = dirs.take()
    parents = [(await _python(runner, python, WHOAMI, cwd))[1].split()[:2] for _ in range(5)]
    assert [kind for kind, _ in parents] == ["template"] * 5
    pids = [pid for _, pid in parents]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4], pids


async def test_preload_errors_are_said_at_start_and_the_rest_still_load(
    isolated: tuple[Factory, WorkDirs, str], caplog: pytest.LogCaptureFixture
) -> None:
    make, dirs, python = isolated
    caplog.set_level(logging.ERROR, "kiok.worker.process")
    runner = make(preload=("colorsys", "no_such_module_kiok"))
    runner.prewarm()
    deadline = time.monotonic() + 60
    while "no_such_module_kiok" not in caplog.text:  # said at start, before any task ran
        assert time.monotonic() < deadline, caplog.text
        await asyncio.sleep(0.05)
    errors = [r.getMessage() for r in caplog.records if "preload" in r.getMessage()]
    assert errors == [
        "task spawner: kiok.worker.python.preload: cannot import no_such_module_kiok "
        "(ModuleNotFoundError: No module named 'no_such_module_kiok')"
    ]
    outcome, out = await _python(runner, python, "import sys; print('colorsys' in sys.modules)", dirs.take())
    assert outcome.exit_code == 0 and out == "True\n"


async def test_without_a_template_python_tasks_run_cold(tmp_path: Path) -> None:
    runner = ProcessRunner(spawners=1, python_template=sp.Template(sys.executable, [], 0))
    try:
        outcome, out = await _python(runner, sys.executable, WHOAMI, tmp_path)
    finally:
        await runner.aclose()
    assert outcome.exit_code == 0 and out.split()[0] == "cold", out


def test_settings_refuse_what_cannot_be_a_template() -> None:
    def settings(**values: str) -> Settings:
        return Settings.load(env=dict(values))

    assert python_template(settings(), "/usr/bin/python3") == sp.Template("/usr/bin/python3", [], 1000)
    assert python_template(settings(KIOK_WORKER_PYTHON_TEMPLATE_MAX_TASKS="0"), "py") is None
    with pytest.raises(InvalidInput, match="'pandas; rm' is not a module name"):
        python_template(settings(KIOK_WORKER_PYTHON_PRELOAD="numpy, pandas; rm"), "py")
    with pytest.raises(
        InvalidInput, match=r"max\.tasks \(KIOK_WORKER_PYTHON_TEMPLATE_MAX_TASKS\): -1 is out of"
    ):
        settings(KIOK_WORKER_PYTHON_TEMPLATE_MAX_TASKS="-1")  # refused with the other settings
    assert fs.parse_preload(" pandas , os.path,") == ("pandas", "os.path")


def test_template_messages_and_requests() -> None:
    assert fs.decode_reply(b"Rmod_a (ImportError: x)\nmod_b (E: y)") == fs.Ready(
        ("mod_a (ImportError: x)", "mod_b (E: y)")
    )
    assert fs.decode_reply(b"R") == fs.Ready(())
    assert fs.decode_reply(b"F12 345") == fs.Forked(12, 345)
    assert fs.decode_reply(b"X345 256") == fs.ChildExited(345, 256)
    assert fs.decode_reply(b"E12 11 Resource temporarily unavailable") == fs.ForkFailed(
        12, 11, "Resource temporarily unavailable"
    )
    with pytest.raises(ValueError):
        fs.decode_reply(b"?")
    assert fs.encode_request("/w/1", {"A": "1", "B": "x=y"}) == b"\0/w/1\0A=1\0B=x=y"
    assert fs.encode_request("/w/1", {}, 1234) == b"1234\0/w/1"
    with pytest.raises(ValueError, match="null byte"):
        fs.encode_request("/w/1", {"A": "a\0b"})


def test_only_an_interpreter_root_alone_controls_is_started_as_root(tmp_path: Path) -> None:
    """With attempt users the template starts as root (to fork each attempt as its user):
    an interpreter, a ``pyvenv.cfg`` (or a directory one could be added to) or a standard
    library that anyone else could change would run their code as root. Such a template is
    refused (python tasks then run cold), however the path gets there."""
    assert fs.root_trusted("/usr/bin/python3") is None
    assert fs.root_trusted("venv/bin/python") == "venv/bin/python is not an absolute path"
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to("/usr/bin/python3")
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    for path in (tmp_path, venv):
        path.chmod(0o755)
    python = str(venv / "bin" / "python")
    assert fs.root_trusted(python) is None
    (venv / "pyvenv.cfg").chmod(0o664)  # its group could point it at a library of its own
    assert fs.root_trusted(python) == f"{venv}/pyvenv.cfg is writable by others than root"
    (venv / "pyvenv.cfg").chmod(0o644)
    (venv / "pyvenv.cfg").write_text("home = /nonexistent-kiok/bin\n")
    assert fs.root_trusted(python) == "/nonexistent-kiok: No such file or directory"
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    os.chown(venv / "bin", 54321, -1)  # its owner could add a pyvenv.cfg beside the interpreter
    assert fs.root_trusted(python) == f"{venv}/bin belongs to uid 54321"
    os.chown(venv / "bin", 0, -1)
    elsewhere = tmp_path / "elsewhere"  # reached through a link root made
    elsewhere.mkdir()
    (elsewhere / "python").symlink_to("/usr/bin/python3")
    os.chown(elsewhere, 54321, -1)
    (tmp_path / "link").symlink_to(elsewhere)
    assert fs.root_trusted(str(tmp_path / "link" / "python")) == f"{elsewhere} belongs to uid 54321"


async def test_a_template_whose_site_code_is_not_roots_alone_is_not_started(
    with_attempt_users: tuple[Factory, WorkDirs, str], task_tmp_path: Path
) -> None:
    """A template keeps root (as its saved user id) to fork attempts as their users, so the
    code it runs must be root's alone: a ``PYTHONPATH`` directory another user could write
    to (a ``.pth`` there would run in it) means no template, and python tasks run cold."""
    make, dirs, python = with_attempt_users
    theirs = task_tmp_path / "theirs"  # where the template can see it
    theirs.mkdir()
    os.chown(theirs, 54321, -1)
    runner = make(env={"PATH": "/usr/bin:/bin", "HOME": "/root", "PYTHONPATH": str(theirs)})
    outcome, out = await asyncio.wait_for(_python(runner, python, WHOAMI, dirs.take()), 30)
    assert outcome.exit_code == 0 and out.split()[0] == "cold", (outcome, out)


async def test_a_root_started_template_passes_no_flag_of_its_start_on(
    with_attempt_users: tuple[Factory, WorkDirs, str],
) -> None:
    """Started as root, the template runs with ``-S -E -B`` until it has dropped; the
    interpreters a forked task starts (``multiprocessing``'s spawn, which copies the running
    interpreter's flags) must not get them: they would start without site-packages or
    ``PYTHONPATH``."""
    make, dirs, python = with_attempt_users
    script = "import subprocess\nprint(subprocess._args_from_interpreter_flags())"
    outcome, out = await asyncio.wait_for(_python(make(), python, script, dirs.take()), 30)
    assert outcome.exit_code == 0 and out == "[]\n", (outcome, out)


async def test_a_forked_attempt_ends_as_a_new_interpreter_does(
    with_attempt_users: tuple[Factory, WorkDirs, str], task_tmp_path: Path
) -> None:
    """A fork ends in ``os._exit``; the interpreter's last steps are taken all the same: a
    file the script left open has its buffered data written, ``__del__`` methods run. And
    ``__main__`` and ``sys`` look as they do in ``python -u /dev/fd/3``."""
    make, dirs, python = with_attempt_users
    out_file = task_tmp_path / "left-open.txt"
    script = f"""
import sys
import tempfile
kept = open({str(out_file)!r}, "w")
kept.write("written at exit")
class Last:
    def __del__(self):
        print("del ran")
last = Last()
x: int = 1
print(type(__loader__).__name__, __annotations__, sys.orig_argv[1:])
"""
    runner = make()
    outcome, out = await asyncio.wait_for(_python(runner, python, WHOAMI + script, dirs.take()), 30)
    assert outcome.exit_code == 0, out
    assert out.split()[0] == "template", out
    assert out.splitlines()[1:] == ["SourceFileLoader {'x': <class 'int'>} ['-u', '/dev/fd/3']", "del ran"]
    assert out_file.read_text() == "written at exit"
    # A daemon thread still running at the end never sees the globals cleared (an
    # interpreter stops such threads before it clears anything).
    daemon = f"""
import threading, time
kept = open({str(task_tmp_path / "with-a-daemon.txt")!r}, "w")
kept.write("flushed at exit")  # not cleared while the thread runs: flushed instead
running = True
def spin(sleep=time.sleep):
    while running:
        sleep(0.001)
    print("the daemon thread saw its globals cleared", flush=True)
threading.Thread(target=spin, daemon=True).start()
class Slow:  # cleared after running: the thread has time to look
    def __del__(self, sleep=time.sleep):
        sleep(0.2)
slow = Slow()
"""
    outcome, out = await asyncio.wait_for(_python(runner, python, daemon, dirs.take()), 30)
    assert outcome.exit_code == 0 and "cleared" not in out, out
    assert (task_tmp_path / "with-a-daemon.txt").read_text() == "flushed at exit"


#: A stand-in for numpy's global generator (``numpy.random.rand``): seeded once, when it is
#: imported, and not again in a forked child (numpy registers nothing to run at fork).
FAKE_NUMPY_RANDOM = """
import os, random as _random
_state = _random.Random(os.urandom(16))
def seed(value=None):
    _state.seed(os.urandom(16) if value is None else value)
def rand():
    return _state.random()
"""


async def test_forked_attempts_do_not_share_numpys_random_numbers(
    with_attempt_users: tuple[Factory, WorkDirs, str],
) -> None:
    """Preloaded (pandas imports it), numpy's global generator would give every attempt
    forked from one template the same numbers: each child reseeds it."""
    make, dirs, python = with_attempt_users
    site = Path(tempfile.mkdtemp(dir="/var/lib/kiok-tests"))  # root's alone, as a template's code must be
    try:
        site.chmod(0o755)
        (site / "numpy").mkdir(0o755)
        (site / "numpy" / "__init__.py").write_text("")
        (site / "numpy" / "random.py").write_text(FAKE_NUMPY_RANDOM)
        env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "PYTHONPATH": str(site)}
        runner = make(preload=("numpy.random",), env=env)
        draws = []
        for _ in range(3):
            script = WHOAMI + "import numpy.random\nprint(numpy.random.rand())\n"
            outcome, out = await asyncio.wait_for(_python(runner, python, script, dirs.take(), env=env), 30)
            assert outcome.exit_code == 0 and out.split()[0] == "template", out
            draws.append(out.splitlines()[1])
        assert len(set(draws)) == 3, draws
    finally:
        shutil.rmtree(site)


async def test_python_settings_a_root_started_template_cannot_apply_mean_cold_attempts(
    with_attempt_users: tuple[Factory, WorkDirs, str],
) -> None:
    """Started as root with ``-E``, the template reads no ``PYTHON*`` variable: those it can
    apply once dropped it does (``PYTHONIOENCODING``, ``PYTHONWARNINGS``, …), and with any
    other set (``PYTHONHASHSEED`` here) python tasks run cold, as new interpreters that
    apply it, rather than forked without it."""
    make, dirs, python = with_attempt_users
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/root",
        "PYTHONIOENCODING": "latin-1:backslashreplace",
        "PYTHONWARNINGS": "error::UserWarning",
    }
    script = (
        WHOAMI + "import sys, warnings\nprint(sys.stdout.encoding, sys.stdout.errors)\nwarnings.warn('w')\n"
    )
    runner = make(env=env)
    outcome, out = await asyncio.wait_for(_python(runner, python, script, dirs.take(), env=env), 30)
    assert out.split()[0] == "template", out
    assert out.splitlines()[1] == "latin-1 backslashreplace", out
    assert outcome.exit_code == 1 and out.splitlines()[-1] == "UserWarning: w", out
    # stderr keeps backslashreplace, as in a new interpreter: no traceback lost to encoding
    euro = "raise ValueError('\\u20ac')"
    outcome, out = await asyncio.wait_for(_python(runner, python, euro, dirs.take(), env=env), 30)
    assert outcome.exit_code == 1 and out.splitlines()[-1] == "ValueError: \\u20ac", out

    env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "PYTHONHASHSEED": "0"}
    script = WHOAMI + "import sys\nprint(sys.flags.hash_randomization, hash('kiok'))\n"
    outcome, out = await asyncio.wait_for(_python(make(env=env), python, script, dirs.take(), env=env), 30)
    assert outcome.exit_code == 0 and out.split()[0] == "cold", out
    again = await asyncio.wait_for(_python(make(env=env), python, script, dirs.take(), env=env), 30)
    assert out.splitlines()[1].startswith("0 ") and again[1].splitlines()[1] == out.splitlines()[1]


#: A forked attempt makes a child of its template (``clone(CLONE_PARENT)``), in a session of
#: its own, that would outlive it: no one adopts it, its parent is the template.
CHILD_OF_THE_TEMPLATE = """
import ctypes, os, platform
SYS_CLONE = {"x86_64": 56, "aarch64": 220}[platform.machine()]
CLONE_PARENT = 0x8000
pid = ctypes.CDLL(None, use_errno=True).syscall(SYS_CLONE, CLONE_PARENT | 17, 0, 0, 0, 0)
if pid == 0:
    os.setsid()
    os.execv("/bin/sleep", ["sleep", "600"])
print(pid, os.getppid())
"""


async def test_a_child_an_attempt_gives_its_template_does_not_outlive_the_attempt(
    with_attempt_users: tuple[Factory, WorkDirs, str],
) -> None:
    make, dirs, python = with_attempt_users
    runner = make()
    outcome, out = await asyncio.wait_for(_python(runner, python, CHILD_OF_THE_TEMPLATE, dirs.take()), 30)
    assert outcome.exit_code == 0, out
    stray, template = out.split()
    look = f"""
import os
try:
    stat = open("/proc/{stray}/stat").read()
    print(stat.rsplit(")", 1)[1].split()[0], stat.rsplit(")", 1)[1].split()[1])
except FileNotFoundError:
    print("gone", "-")
"""
    outcome, out = await asyncio.wait_for(_python(runner, python, look, dirs.take()), 30)
    state, parent = out.split()
    # Killed as its attempt ended (a zombie until its template reaps it), not still asleep.
    assert state == "gone" or (state, parent) == ("Z", template), out
