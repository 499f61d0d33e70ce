"""Attacks on task isolation on the worker (the security review of session 17): what a task can
do to the attempts that come after it or run beside it, with real spawner, template and task
processes, isolated as the task user (the suite runs as root, as CI does). Each test is one
attack; those marked ``xfail`` are weaknesses reported but not fixed (the reason says why)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kiok.testing.process import Standalone, kiok_executable
from kiok.worker import spawn_protocol as sp
from kiok.worker.isolation import Isolation, prepare_work_root, python_for_tasks, task_isolation
from kiok.worker.process import ProcessOutcome, ProcessRunner, WorkDirs
from kiok.worker.stop import StopSignal
from tests.processes import processes_with


@dataclasses.dataclass
class Bench:
    runner: ProcessRunner
    dirs: WorkDirs
    python: str
    isolation: Isolation


@contextlib.asynccontextmanager
async def _bench(
    mode: str = "user+pidns", *, template: bool = False, attempt_users: int = 4
) -> AsyncIterator[Bench]:
    """Attempts as ``attempt_users`` users of their own, as a worker runs them; 0: all as the
    task user, as the spawner and template run, which is how a test has a task stop or kill
    them (with attempt users no task can: ``test_with_attempt_users_a_task_cannot_stop_or_kill
    _the_spawner_or_its_template``), so as to see what the worker then does: a spawner or a
    template can still be stopped or die for reasons of their own (an operator, the OOM
    killer)."""
    isolation = task_isolation("user", "kiok-task", attempt_users)
    assert isolation.mode == "user+pidns", "unshare --pid must work where the tests run"
    isolation = dataclasses.replace(isolation, mode=mode)
    python = python_for_tasks("", sys.executable, isolation)
    root = prepare_work_root("", Path("/nonexistent"), f"audit-s17-{os.getpid()}", isolation)
    runner = ProcessRunner(
        {"PATH": "/usr/bin:/bin", "HOME": "/root"},
        isolation=isolation,
        spawners=1,
        python_template=sp.Template(python, [], 1000) if template else None,
    )
    try:
        yield Bench(runner, WorkDirs(root, (isolation.uid, isolation.gid)), python, isolation)
    finally:
        for pid in runner.spawner_pids:  # one a test's task stopped must hear the end
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        await runner.aclose()
        shutil.rmtree(root, ignore_errors=True)


async def _run(
    bench: Bench,
    kind: str,
    script: str,
    cwd: Path,
    *,
    timeout_s: float = 60,
    output: list[bytes] | None = None,
) -> tuple[ProcessOutcome, str]:
    """Run ``script`` as a ``sh`` task, a ``cold`` python task or a ``forked`` one."""
    out: list[bytes] = [] if output is None else output
    argv = ["/bin/sh", "/dev/fd/3"] if kind == "sh" else [bench.python, "-u", "/dev/fd/3"]
    outcome = await bench.runner.run(
        argv,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin"},
        output=out.append,
        timeout_s=timeout_s,
        stop=StopSignal(),
        grace_s=1,
        script=script,
        fork=kind == "forked",
    )
    return outcome, b"".join(out).decode(errors="replace")


async def _until(predicate: object, what: str, deadline_s: float = 20) -> None:
    assert callable(predicate)
    end = time.monotonic() + deadline_s
    while not predicate():
        assert time.monotonic() < end, f"{what}: not reached in time"
        await asyncio.sleep(0.01)


# --- an attempt plants files in the idle working directories of later attempts --------------

#: Run by the attacker: every other working directory of the worker (their names are its own
#: with another number, and the root is searchable) gets a file, and a ``.pth`` in the user
#: site-packages its HOME gives a later python task, which runs code at that task's start.
PLANT = """
import os, sys
here = os.getcwd()
root, name = os.path.split(here)
prefix = name.rsplit(".", 1)[0]
usersite = ".local/lib/python%d.%d/site-packages" % sys.version_info[:2]
for n in range(1, 50):
    other = os.path.join(root, f"{prefix}.{n}")
    if other == here or not os.path.isdir(other):
        continue
    pth = os.path.join(other, usersite)
    os.makedirs(pth, exist_ok=True)
    with open(os.path.join(pth, "zz-planted.pth"), "w") as f:
        f.write("import sys; print('planted code ran', file=sys.stderr)\\n")
    with open(os.path.join(other, ".gitconfig"), "w") as f:
        f.write("[core]\\n\\tfsmonitor = echo planted\\n")
    print("planted", n, flush=True)
"""


def _planted(outcome: ProcessOutcome, out: str, n: str, attempt_users: int) -> bool:
    """Whether ``PLANT`` planted into directory ``n``: as the idle directory's own user
    (no attempt users), it can; as an attempt user of its own, it is refused."""
    if attempt_users:
        return outcome.exit_code == 1 and "PermissionError" in out
    return outcome == ProcessOutcome(0) and f"planted {n}" in out


@pytest.mark.parametrize("attempt_users", [0, 4])
@pytest.mark.parametrize("mode", ["user+pidns", "user"])
async def test_an_ended_attempt_leaves_nothing_in_the_directories_of_later_attempts(
    mode: str, attempt_users: int
) -> None:
    """Idle working directories (emptied, waiting for reuse) have guessable names: an
    attempt as their user could write into them, and whatever it put there (a ``.pth`` run by
    a later python task, a ``.gitconfig`` read by a later task's git, HOME being the
    directory) reached attempts that started after it had ended, of any DAG, with their
    secrets. Now an attempt user of its own cannot write there, and a directory is emptied
    again as the next attempt starts in it."""
    async with _bench(mode, attempt_users=attempt_users) as bench:
        first, mine = bench.dirs.take(), bench.dirs.take()
        outcome, _ = await _run(bench, "sh", "echo earlier attempt > f", first)
        assert outcome == ProcessOutcome(0)
        bench.dirs.give_back(first)  # idle now, emptied by the spawner
        outcome, out = await _run(bench, "cold", PLANT, mine)
        assert _planted(outcome, out, first.name.rsplit(".", 1)[1], attempt_users), (outcome, out)
        bench.dirs.give_back(mine)
        # The attacker has ended and all its processes with it: whichever directory the next
        # attempts get, it is empty and nothing of the attacker runs in them.
        victims = [bench.dirs.take(), bench.dirs.take()]
        assert set(victims) == {first, mine}
        listing = "import os; print(sorted(os.listdir('.')))"
        for cwd in victims:
            outcome, out = await _run(bench, "cold", listing, cwd)
            assert outcome == ProcessOutcome(0) and out == "[]\n", (cwd, out)


@pytest.mark.parametrize("attempt_users", [0, 4])
async def test_an_ended_attempt_leaves_nothing_for_a_forked_python_attempt(attempt_users: int) -> None:
    async with _bench(template=True, attempt_users=attempt_users) as bench:
        first, mine = bench.dirs.take(), bench.dirs.take()
        outcome, _ = await _run(bench, "forked", "open('f', 'w').write('x')", first)
        assert outcome == ProcessOutcome(0)
        bench.dirs.give_back(first)
        outcome, out = await _run(bench, "forked", PLANT, mine)
        assert _planted(outcome, out, first.name.rsplit(".", 1)[1], attempt_users), (outcome, out)
        outcome, out = await _run(bench, "forked", "import os; print(sorted(os.listdir('.')))", first)
        assert outcome == ProcessOutcome(0) and out == "[]\n", out


# --- a config file with secrets that tasks can read ---------------------------------------------


class ConfiguredStandalone(Standalone):
    """``kiok standalone --config FILE``."""

    def __init__(self, data_dir: Path, config: Path) -> None:
        super().__init__(data_dir)
        self.config = config

    def spawn(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [kiok_executable(), self.command, "--config", str(self.config)],
                env=self.env,
                cwd=self.data_dir.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


TOKEN = "zz-service-token-4711"


def test_a_config_file_with_a_secret_the_task_user_can_read_is_refused(task_tmp_path: Path) -> None:
    """The config file may give secret settings (the master key, service tokens, S3 keys):
    one left readable by others (a 0644 file under /etc, the usual default) was read by any
    task, the task user being one of those others."""
    config = task_tmp_path / "kiok.yaml"
    config.write_text(f'kiok.internal.auth.tokens: "{TOKEN}"\n')
    config.chmod(0o644)
    lax = ConfiguredStandalone(task_tmp_path / "lax", config)
    try:
        with pytest.raises(RuntimeError):
            lax.start(timeout_s=30)
    finally:
        lax.stop()
    assert f"the config file {config} holds kiok.internal.auth.tokens" in lax.read_log(), lax.read_log()
    assert "Traceback" not in lax.read_log() and TOKEN not in lax.read_log()
    config.chmod(0o600)
    k = ConfiguredStandalone(task_tmp_path / "private", config)
    try:
        k.start()
        k.register(
            f"""
dag: {{id: audit_config}}
tasks:
  - id: read
    script: cat {config} 2>/dev/null || echo denied
"""
        )
        run = k.wait_run(k.trigger("audit_config"), 30)
        assert run["state"] == "SUCCESS", run
        assert k.log(run["runId"], "read") == "denied\n"
    finally:
        k.stop()


# --- what a task cannot reach of the spawner and the template ------------------------------------

#: From a task: the spawner (pid 1 of the namespace), the template and the child it forked
#: ahead (when forked) are neither readable through /proc nor traceable, the task holds no
#: descriptor beyond 0-3, and a SIGSTOP to pid 1 is ignored.
PROBE = """
import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
def children(pid):
    try:
        return [int(p) for p in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []
me, targets = os.getpid(), {1}
for pid in children(1) + children(os.getppid()):
    if pid != me and b"/dev/fd/3\\x004" in open(f"/proc/{pid}/cmdline", "rb").read():
        targets |= {pid, *children(pid)} - {me}
print("targets", len(targets))
for pid in sorted(targets):
    for what in ("environ", "mem", "maps", "fd", "fdinfo", "cwd", "root"):
        path = f"/proc/{pid}/{what}"
        try:
            os.listdir(path) if what in ("fd", "fdinfo", "cwd", "root") else open(path, "rb").read(1)
            print("LEAK", pid, what)
        except OSError:
            pass
    if libc.ptrace(16, pid, 0, 0) == 0:  # PTRACE_ATTACH
        print("LEAK", pid, "ptrace")
print("fds", sorted(int(fd) for fd in os.listdir("/proc/self/fd"))[:4])
try:
    os.kill(1, signal.SIGSTOP)
except PermissionError:
    pass
try:
    state = open("/proc/1/stat").read().rsplit(")", 1)[1].split()[0]
    print("pid 1", "stopped" if state in "Tt" else "runs")
except FileNotFoundError:  # /proc shows an attempt its own user's processes only
    print("pid 1 hidden")
"""


@pytest.mark.parametrize("kind", ["forked", "cold"])
async def test_a_task_cannot_read_trace_or_stop_the_spawner_or_its_template(kind: str) -> None:
    async with _bench(template=True) as bench:
        cwd = bench.dirs.take()
        await _run(bench, "forked", "pass", cwd)  # the template is up, with a child ahead
        outcome, out = await _run(bench, kind, PROBE, cwd)
        assert outcome == ProcessOutcome(0), out
        # The attempt sees none of them (hidepid): pid 1 is tried blindly, and still runs.
        assert out.splitlines() == ["targets 1", "fds [0, 1, 2, 3]", "pid 1 hidden"], out
        outcome, out = await _run(bench, "forked", "print('served')", cwd)
        assert outcome == ProcessOutcome(0) and out == "served\n"


#: From a task: every command line it can read in /proc that holds the other attempt's secret.
SPY = """
import os
seen = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        line = open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        continue
    seen += 1
    if b"S3cr3t-" + b"VALUE" in line:
        print("LEAK", pid, line.replace(b"\\0", b" ").decode())
print("seen", seen)
"""


@pytest.mark.parametrize("kind", ["sh", "forked", "cold"])
async def test_an_attempt_cannot_read_another_attempts_command_line(kind: str) -> None:
    """Found by the security probe of session 28: the attempts of one spawner share its pid
    namespace, whose /proc showed every process in it: a task printed another DAG's running
    ``mysql --password=…`` command line. That /proc is mounted ``hidepid=2``: an attempt,
    a user of its own, sees its own processes only."""
    async with _bench(template=True) as bench:
        out: list[bytes] = []
        stop = StopSignal()
        victim = asyncio.ensure_future(
            bench.runner.run(
                ["/bin/sh", "/dev/fd/3"],
                cwd=bench.dirs.take(),
                env={"PATH": "/usr/bin:/bin"},
                output=out.append,
                timeout_s=60,
                stop=stop,
                grace_s=1,
                script="exec sh -c 'echo up; sleep 60; true' mysql --password=S3cr3t-VALUE-xyz",
            )
        )
        try:
            await _until(lambda: b"up" in b"".join(out), "the other attempt runs")
            outcome, spied = await _run(
                bench, kind, SPY if kind != "sh" else f"python3 -c '{SPY}'", bench.dirs.take()
            )
            assert outcome == ProcessOutcome(0), spied
            assert "LEAK" not in spied, spied
            assert int(spied.split("seen ")[1]) >= 1, spied  # its own
        finally:
            stop.set()
            await victim


# --- a crashed worker's working directories -------------------------------------------------------


@pytest.mark.parametrize("next_worker", ["the same", "another", "another, in a configured work dir"])
def test_what_attempts_of_a_crashed_worker_wrote_is_not_left_for_later_tasks(
    task_tmp_path: Path, next_worker: str
) -> None:
    """A worker killed -9 (or crashed) left its temporary work root in the temp directory
    (0711, its attempt directories the task user's) with what the attempts running then had
    written; the next worker on the host made a new root and never removed the old one, so
    its tasks (the same user) could read it. The next start of any worker on the host removes
    it: one of another id (the security probe of session 27) claims the dead worker's attempt
    users, and its tasks found the dead attempts' directories by trying every pid."""
    configured = next_worker.endswith("configured work dir")
    env = {"KIOK_WORKER_WORK_DIR": str(task_tmp_path / "work")} if configured else {}
    k = Standalone(task_tmp_path / "kiok", env)
    report = task_tmp_path / "cwd"
    operators = task_tmp_path / "work" / "1.0" / "keep.txt"  # named like an attempt's, not one
    if configured:
        operators.parent.mkdir(parents=True)
        operators.write_text("the operator's")
    old = ""
    try:
        k.start()
        k.register(
            """
dag: {id: audit_crash, params: {report: ""}}
tasks:
  - id: write
    script: |
      echo written-before-the-crash > leftover
      pwd > "$KIOK_PARAM_REPORT"
      sleep 300
"""
        )
        k.trigger("audit_crash", {"report": str(report)})
        old = k.wait_for(lambda: report.exists() and report.read_text().strip(), 30, "the task writes")
        k.kill9()
        if next_worker != "the same":
            k = Standalone(task_tmp_path / "kiok2", env)  # a new data directory: a new worker id
        k.start()
        k.register(
            """
dag: {id: audit_after_crash, params: {old: ""}}
tasks:
  - id: read
    script: cat "$KIOK_PARAM_OLD/leftover" 2>/dev/null || echo clean
"""
        )
        run = k.wait_run(k.trigger("audit_after_crash", {"old": old}), 30)
        assert run["state"] == "SUCCESS", run
        assert k.log(run["runId"], "read") == "clean\n"
        assert not (Path(old) if configured else Path(old).parent).exists()
        assert not configured or operators.read_text() == "the operator's"
    finally:
        k.stop()
        if old:
            shutil.rmtree(Path(old) if configured else Path(old).parent, ignore_errors=True)


# --- weaknesses reported, not fixed ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["user+pidns", "user"])
async def test_killing_the_python_template_does_not_fail_a_concurrent_attempt(mode: str) -> None:
    """A python task may kill its template (both run as the task user). The attempts it had
    forked, other DAGs' included, are then the spawner's children (pid 1 of the namespace,
    or the subreaper without one) and run on to their real end."""
    async with _bench(mode, template=True, attempt_users=0) as bench:
        victim_out: list[bytes] = []
        # It runs until its template is gone (it is then the spawner's child), then ends well.
        victim_script = (
            "import os, time\ntemplate = os.getppid()\nprint('started', flush=True)\n"
            "deadline = time.monotonic() + 30\n"
            "while os.getppid() == template and time.monotonic() < deadline:\n    time.sleep(0.01)\n"
            "print('done')"
        )
        victim = asyncio.ensure_future(
            _run(bench, "forked", victim_script, bench.dirs.take(), output=victim_out)
        )
        await _until(lambda: b"started" in b"".join(victim_out), "the victim runs")
        killer = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('killed')"
        await asyncio.wait_for(_run(bench, "forked", killer, bench.dirs.take()), 30)
        outcome, out = await asyncio.wait_for(victim, 30)
        assert outcome == ProcessOutcome(0) and out == "started\ndone\n", (outcome, out)


def _spawner_stopped(pid: int) -> bool:
    """Whether spawner ``pid`` is stopped (state ``T``); False once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "Tt"
    except OSError:
        return False


async def test_with_user_isolation_a_task_cannot_stall_the_spawner(caplog: pytest.LogCaptureFixture) -> None:
    """With `user` isolation (no pid namespace) the spawner runs as the task user, so a task
    may SIGSTOP it: every other attempt of that spawner then hung past its timeout. The
    worker (root) now continues it, saying so once."""
    async with _bench("user", attempt_users=0) as bench:
        stopper = asyncio.ensure_future(
            _run(bench, "sh", "kill -STOP $PPID; echo stopped", bench.dirs.take())
        )
        await _until(lambda: bool(bench.runner.spawner_pids), "the spawner starts")
        (spawner,) = bench.runner.spawner_pids
        try:
            await _until(lambda: _spawner_stopped(spawner) or stopper.done(), "the task stops the spawner")
            # Another attempt must still be started and held to its timeout.
            outcome, _ = await asyncio.wait_for(
                _run(bench, "sh", "sleep 30", bench.dirs.take(), timeout_s=1), 15
            )
            assert outcome.timed_out, outcome
            outcome, out = await asyncio.wait_for(stopper, 15)
            assert outcome == ProcessOutcome(0) and out == "stopped\n", (outcome, out)
            assert bench.runner.spawner_pids == [spawner]  # continued, not replaced
            warnings = [r for r in caplog.records if "was stopped, by a task" in r.getMessage()]
            assert len(warnings) == 1, caplog.text
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(spawner, signal.SIGCONT)
            stopper.cancel()
            with contextlib.suppress(BaseException):
                await stopper


async def test_with_user_isolation_a_task_stopping_the_spawner_in_a_loop_stalls_nothing() -> None:
    """A task that stops its spawner again as soon as it is continued (``kill -STOP`` in a
    loop) would hold up every other attempt of it for ever: the spawner is ended like a dead
    one instead, its attempts fail within seconds saying why, and later attempts get a new
    one."""
    async with _bench("user", attempt_users=0) as bench:
        victim_out: list[bytes] = []
        victim = asyncio.ensure_future(
            _run(bench, "sh", "echo started; sleep 30", bench.dirs.take(), timeout_s=5, output=victim_out)
        )
        await _until(lambda: b"started" in b"".join(victim_out), "the victim runs")
        (spawner,) = bench.runner.spawner_pids
        stopper = asyncio.ensure_future(
            _run(bench, "sh", "while kill -STOP $PPID; do :; done", bench.dirs.take())
        )
        try:
            await _until(lambda: _spawner_stopped(spawner) or stopper.done(), "the task stops the spawner")
            # The victim is held to its timeout: it ends by then (its spawner ended a few
            # seconds into the loop, before it could time the victim out: the error says why).
            outcome, _ = await asyncio.wait_for(victim, 10)
            assert outcome.exit_code is None and outcome.error is not None, outcome
            assert "was ended: a task stopped it (SIGSTOP)" in outcome.error, outcome
            outcome, _ = await asyncio.wait_for(stopper, 15)
            assert outcome.error is not None and "SIGSTOP" in outcome.error, outcome
            outcome, out = await asyncio.wait_for(_run(bench, "sh", "echo later", bench.dirs.take()), 30)
            assert outcome == ProcessOutcome(0) and out == "later\n", (outcome, out)
            assert bench.runner.spawner_pids and bench.runner.spawner_pids != [spawner]
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(spawner, signal.SIGCONT)
            for attempt in (victim, stopper):
                attempt.cancel()
                with contextlib.suppress(BaseException):
                    await attempt


@pytest.mark.parametrize("mode", ["user+pidns", "user"])
async def test_with_attempt_users_a_task_cannot_stop_or_kill_the_spawner_or_its_template(mode: str) -> None:
    """Each attempt runs as a user of its own, never the spawner's or the template's: the
    stops and kills the tests above have a task make (with attempt users off) are refused.
    A cold attempt's shell waits for its spawner's real user to be its own again: for the
    microseconds of a cold start it is the attempt's (documented; inside a pid namespace
    the kernel drops such a signal to its pid 1 anyway)."""
    async with _bench(mode, template=True) as bench:
        await _run(bench, "forked", "pass", bench.dirs.take())  # the template is up
        started = 'while [ "$(awk \'/^Uid:/ {print $2}\' /proc/$PPID/status)" = "$(id -u)" ]; do :; done\n'
        for sig in ("STOP", "KILL"):
            outcome, out = await _run(bench, "sh", f"{started}kill -{sig} $PPID", bench.dirs.take())
            assert outcome.exit_code != 0 and "not permitted" in out, (outcome, out)
            script = f"import os, signal\nos.kill(os.getppid(), signal.SIG{sig})"
            outcome, out = await _run(bench, "forked", script, bench.dirs.take())
            assert outcome.exit_code == 1 and "PermissionError" in out, (outcome, out)
        (spawner,) = bench.runner.spawner_pids
        assert not _spawner_stopped(spawner)
        outcome, out = await _run(bench, "forked", "print('served')", bench.dirs.take())
        assert outcome == ProcessOutcome(0) and out == "served\n", (outcome, out)


async def test_what_an_attempt_leaves_in_tmp_does_not_reach_the_next_one() -> None:
    """/tmp (and /var/tmp, /dev/shm) was the host's, shared by every attempt: what an attempt
    left there outlived it and reached later attempts of any DAG. The spawner now mounts its
    own and empties them whenever an attempt starts while no other runs."""
    path = f"/tmp/kiok-audit-s17-{uuid.uuid4().hex}"
    try:
        async with _bench() as bench:
            cwd = bench.dirs.take()
            outcome, _ = await _run(bench, "sh", f"echo from-attempt-1 > {path}", cwd)
            assert outcome == ProcessOutcome(0)
            outcome, out = await _run(bench, "sh", f"cat {path} 2>/dev/null || echo clean", cwd)
            assert outcome == ProcessOutcome(0) and out == "clean\n", out
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


async def test_what_an_attempt_leaves_in_system_v_ipc_does_not_reach_the_next_one() -> None:
    """System V IPC objects (shared memory, semaphores, message queues) a task made were the
    host's and outlived the attempt: a later attempt of any DAG read them. The spawner now
    has an IPC namespace of its own, emptied whenever an attempt starts while no other runs."""
    made = ""
    try:
        async with _bench() as bench:
            cwd = bench.dirs.take()
            outcome, made = await _run(bench, "sh", "ipcmk -M 4096 | tr -dc 0-9", cwd)
            assert outcome == ProcessOutcome(0) and made.isdigit(), made
            # ``ipcs -i`` exits 0 whether or not the object exists: what it prints tells.
            found = f"ipcs -m -i {made} 2>/dev/null | grep -q 'shmid={made}$'"
            outcome, out = await _run(bench, "sh", f"{found} && echo found || echo clean", cwd)
            assert outcome == ProcessOutcome(0) and out == "clean\n", out
    finally:
        if made.isdigit():
            subprocess.run(["ipcrm", "-m", made], capture_output=True, check=False)


#: Run by an attempt: something in each private temporary directory (a tree it cannot list
#: any more, among them), a semaphore set and a message queue.
LITTER = """
mkdir -p /tmp/deep/er && touch /tmp/deep/er/f /tmp/f /var/tmp/f /dev/shm/f && chmod 0 /tmp/deep
ipcmk -S 1 >/dev/null && ipcmk -Q >/dev/null
echo littered
"""
#: Run by the next: what of the task user's is left there, and what System V IPC there is.
LEFT = """
find /tmp /var/tmp /dev/shm -mindepth 1 -maxdepth 1 -user "$(id -un)" | sort
tail -q -n +2 /proc/sysvipc/shm /proc/sysvipc/sem /proc/sysvipc/msg
echo end
"""


@pytest.mark.parametrize("kind", ["sh", "forked"])
async def test_what_an_attempt_leaves_anywhere_in_its_temporary_directories_is_gone_for_the_next(
    kind: str,
) -> None:
    """The private /tmp, /var/tmp, /dev/shm and IPC are emptied of all of it, whatever the
    attempt (started, or forked from the python template) and however locked its tree."""
    async with _bench(template=True) as bench:
        cwd = bench.dirs.take()
        litter = LITTER if kind == "sh" else f"import subprocess\nsubprocess.run(['sh', '-c', {LITTER!r}])"
        outcome, out = await _run(bench, kind, litter, cwd)
        assert outcome == ProcessOutcome(0) and out == "littered\n", out
        outcome, out = await _run(bench, "sh", LEFT, cwd)
        assert outcome == ProcessOutcome(0) and out == "end\n", out


async def test_a_task_that_leaves_many_files_holds_up_no_stop() -> None:
    """Emptying goes in slices between events: an attempt waiting for it can be stopped
    (and ends, never started, long before the emptying does), and the next one finds the
    directories empty."""
    async with _bench() as bench:
        cwd = bench.dirs.take()
        script = "cd /tmp && seq 300000 | xargs touch"
        outcome, _ = await _run(bench, "sh", script, cwd, timeout_s=120)
        assert outcome == ProcessOutcome(0)
        stop, out = StopSignal(), list[bytes]()
        waiting = asyncio.ensure_future(
            bench.runner.run(
                ["/bin/sh", "/dev/fd/3"],
                cwd=cwd,
                env={"PATH": "/usr/bin:/bin"},
                output=out.append,
                timeout_s=60,
                stop=stop,
                grace_s=1,
                script="echo ran; sleep 60",
            )
        )
        await asyncio.sleep(0.05)  # the spawner is emptying /tmp (~2 s for 300000 files)
        stop.set()
        outcome = await asyncio.wait_for(waiting, 1)
        assert outcome.stopped and outcome.exit_code == -signal.SIGTERM and not out, (outcome, out)
        outcome, out2 = await _run(bench, "sh", 'find /tmp -mindepth 1 -maxdepth 1 -user "$(id -un)"', cwd)
        assert outcome == ProcessOutcome(0) and out2 == "", out2


async def test_directories_root_made_in_the_hosts_tmp_stay_reachable() -> None:
    """What tasks are given under the host's /tmp (kiok's own work root, a directory an
    operator made for them) stays at its path in the spawner's private /tmp, as it was when
    the spawner started; what tasks write there is the host's."""
    shared = Path(f"/tmp/kiok-audit-s17-shared-{uuid.uuid4().hex}")
    shared.mkdir(0o755)
    shared.chmod(0o1777)
    try:
        async with _bench() as bench:
            cwd = bench.dirs.take()
            assert str(cwd).startswith("/tmp/")  # the default work root, under the host's /tmp
            outcome, out = await _run(bench, "sh", f"pwd; echo from-a-task > {shared}/f", cwd)
            assert outcome == ProcessOutcome(0) and out == f"{cwd}\n", out
            assert (shared / "f").read_text() == "from-a-task\n"
    finally:
        shutil.rmtree(shared, ignore_errors=True)


async def test_the_private_temporary_directories_hold_a_quarter_of_memory_each() -> None:
    """A tmpfs holds half the machine's memory by default, and what a task leaves there stays
    until its spawner is next idle: three of them could pin more memory than there is."""
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    total_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    async with _bench() as bench:
        outcome, out = await _run(
            bench, "sh", "for d in /tmp /var/tmp /dev/shm; do stat -f -c '%b %S' $d; done", bench.dirs.take()
        )
    assert outcome == ProcessOutcome(0), out
    for line in out.splitlines():
        blocks, size = (int(x) for x in line.split())
        assert abs(blocks * size / 1024 - total_kib / 4) < total_kib / 100, (line, total_kib)


async def test_with_user_isolation_a_dead_spawners_attempt_users_are_cleared_before_reuse() -> None:
    """Without a pid namespace nothing ends with a spawner that dies: what its attempts left
    outside their groups lives on, re-parented to the host's init, as the attempt users the
    next attempts get. The worker kills every process of those users before it hands them
    out again."""
    seconds = f"6{uuid.uuid4().int % 10**6}.25"  # a sleep no other process runs
    try:
        async with _bench("user") as bench:
            out: list[bytes] = []
            script = (
                f"setsid sh -c 'echo $$ > daemon; exec sleep {seconds}' </dev/null >/dev/null 2>&1 &\n"
                "while [ ! -s daemon ]; do sleep 0.01; done; echo started; sleep 30"
            )
            attempt = asyncio.ensure_future(_run(bench, "sh", script, bench.dirs.take(), output=out))
            await _until(lambda: b"started" in b"".join(out), "the attempt leaves its daemon")
            assert processes_with(["sleep", seconds])
            (spawner,) = bench.runner.spawner_pids
            os.kill(spawner, signal.SIGKILL)
            outcome, _ = await asyncio.wait_for(attempt, 20)
            assert outcome.error is not None and "spawner" in outcome.error, outcome
            await _until(lambda: not processes_with(["sleep", seconds]), "the daemon is killed", 5)
    finally:
        for pid in processes_with(["sleep", seconds]):
            os.kill(pid, signal.SIGKILL)
