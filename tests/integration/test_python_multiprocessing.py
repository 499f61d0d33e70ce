"""``multiprocessing`` in a python task, in a real ``kiok standalone``: a pool started with
``spawn`` or ``forkserver`` (the default of Python 3.14 on Linux) re-reads the task's script
in each of its processes, from ``__main__.__file__``. ``/dev/fd/3`` names another file in
each of those (their own descriptor 3), so they found no function of the script and the pool
waited for ever, until the task's timeout; the script is now named by a path each process
of the attempt reads the same script through, forked from the template or cold."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kiok.testing.process import Standalone

POOL = """
import multiprocessing, sys
def square(x):
    return x * x
if __name__ == "__main__":
    with multiprocessing.get_context(sys.argv[1] if len(sys.argv) > 1 else "{method}").Pool(2) as pool:
        print("{method}", pool.map(square, range(5)))
"""


def _task(tid: str, method: str, python: str | None = None) -> str:
    field = f"\n    python: {python}" if python else ""
    body = "\n".join("      " + line for line in POOL.format(method=method).strip().splitlines())
    return f"  - id: {tid}\n    type: python\n    timeout: 40s{field}\n    script: |\n{body}\n"


def _another_interpreter(kiok: Standalone, task_tmp_path: Path) -> str:
    """A virtualenv of the worker's interpreter, which the task users can run: its tasks run cold."""
    kiok.register(
        "dag: {id: which}\ntasks: [{id: t, type: python, script: 'import sys; print(sys.executable)'}]"
    )
    worker_python = kiok.log(kiok.wait_run(kiok.trigger("which"), 60)["runId"], "t").strip()
    venv = task_tmp_path / "venv"
    subprocess.run([worker_python, "-m", "venv", "--without-pip", str(venv)], check=True)
    return str(venv / "bin" / "python")


def test_a_pool_started_by_spawn_or_forkserver_runs_the_tasks_functions(
    kiok: Standalone, task_tmp_path: Path
) -> None:
    cold = _another_interpreter(kiok, task_tmp_path)
    tasks = (
        _task("forked_spawn", "spawn")
        + _task("forked_forkserver", "forkserver")
        + _task("forked_fork", "fork")
        + _task("cold_spawn", "spawn", cold)
        + _task("cold_forkserver", "forkserver", cold)
    )
    kiok.register("dag: {id: pools}\ntasks:\n" + tasks)
    run = kiok.wait_run(kiok.trigger("pools"), 120)
    logs = {tid: kiok.log(run["runId"], tid) for tid in run["tasks"]}
    assert run["state"] == "SUCCESS", (run["tasks"], logs)
    for tid, text in logs.items():
        method = tid.split("_", 1)[1]
        assert f"{method} [0, 1, 4, 9, 16]" in text, (tid, text)


COLD = """
import sys
names = sorted(k for k in globals() if not k.startswith("__"))
print(names, __name__, sys.argv, sys.path[0], sys.orig_argv[1:])
def fail():
    raise ValueError("boom")
if sys.argv[0] == "/dev/fd/3":
    fail()
"""


def test_a_cold_attempt_runs_its_script_as_python_dev_fd_3_would(
    kiok: Standalone, task_tmp_path: Path
) -> None:
    """What starts a cold attempt's script is not seen: no name of it in the script's
    globals, its ``sys.argv``, ``sys.path`` and ``sys.orig_argv`` a script's, a traceback from
    the script's own frame, and the exit statuses of an interpreter."""
    cold = _another_interpreter(kiok, task_tmp_path)
    body = "\n".join("      " + line for line in COLD.strip().splitlines())
    kiok.register(
        f"dag: {{id: cold, python: {cold}}}\ntasks:\n"
        f"  - id: raises\n    type: python\n    script: |\n{body}\n"
        "  - {id: exits, type: python, script: 'import sys; sys.exit(3)'}\n"
        "  - {id: says, type: python, script: 'raise SystemExit(\"bye\")'}\n"
    )
    run = kiok.wait_run(kiok.trigger("cold"), 60)
    tasks = run["tasks"]
    out = kiok.log(run["runId"], "raises")
    # sys.path[0]: the script's directory as python takes it (a memfd's is /), as when forked.
    assert out.splitlines()[0] == "['sys'] __main__ ['/dev/fd/3'] / ['-u', '/dev/fd/3']", out
    assert 'File "/dev/fd/3", line 7, in <module>' in out and "<string>" not in out, out
    assert out.split("Traceback (most recent call last):\n")[1].startswith('  File "/dev/fd/3"'), out
    assert tasks["raises"]["error"] == "ValueError: boom (exit code 1)", tasks["raises"]
    assert tasks["exits"]["exitCode"] == 3, tasks["exits"]
    assert (tasks["says"]["exitCode"], kiok.log(run["runId"], "says")) == (1, "bye\n"), tasks["says"]
