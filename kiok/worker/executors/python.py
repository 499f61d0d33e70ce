"""``python`` tasks: the script runs as ``<python> -u /dev/fd/3`` would, read from
``/dev/fd/3`` (never an argument or a file on disk; the working directory is therefore not
on ``sys.path``), with ``__main__.__file__`` a path each process the attempt starts reads
the same script at (``python_template.main_path``: ``multiprocessing``'s ``spawn`` and
``forkserver`` re-run the script from it). ``<python>`` is the task's ``python``, else its
DAG's, else the worker's (``kiok.python.path``). With a python template
(``kiok.worker.forkserver``), an attempt on the worker's interpreter is a fork of a warm one
rather than a new process: the same script, descriptors, directory and environment, ~1 ms
instead of ~25. An attempt on another interpreter runs cold: the template is the worker's
interpreter, with its modules. A raised exception exits non-zero; its last traceback line
becomes the task's ``error``."""

from __future__ import annotations

from kiok.worker.executors.base import AttemptContext, AttemptResult, process_result
from kiok.worker.process import ProcessRunner

#: What a cold attempt runs, as ``<python> -u -c COLD_MAIN``: ``python -u /dev/fd/3``, but
#: with ``__file__`` naming the script through this process (``main_path``, which a new
#: interpreter cannot be told). Any python 3 runs it; tracebacks start at the script's frame.
COLD_MAIN = """\
import os, sys
if not getattr(sys.flags, "safe_path", False):  # as python does for a script: its directory
    sys.path[0] = os.path.dirname(os.path.realpath("/dev/fd/3"))  # before any import
try:  # loaded as the interpreter starts; importlib.machinery would cost ~1 ms more
    SourceFileLoader = sys.modules["_frozen_importlib_external"].SourceFileLoader
except (KeyError, AttributeError):
    from importlib.machinery import SourceFileLoader
sys.argv[0] = "/dev/fd/3"
if hasattr(sys, "orig_argv"):
    sys.orig_argv[:] = [sys.executable, "-u", "/dev/fd/3"]
__file__ = "/proc/%d/fd/3" % os.getpid()
__loader__ = SourceFileLoader("__main__", "/dev/fd/3")
with open("/dev/fd/3", "rb") as _kiok_script:
    _kiok_source = _kiok_script.read()
del os, sys, SourceFileLoader, _kiok_script
try:
    exec(compile(globals().pop("_kiok_source"), "/dev/fd/3", "exec", dont_inherit=True))
except Exception as _kiok_error:
    # From the script's frame; none for a script that does not compile, as python shows it.
    _kiok_error.__traceback__ = _kiok_error.__traceback__.tb_next
    __import__("sys").excepthook(type(_kiok_error), _kiok_error, _kiok_error.__traceback__)
    raise SystemExit(1) from None
"""


class PythonExecutor:
    def __init__(self, runner: ProcessRunner, python_path: str) -> None:
        self._runner = runner
        self._python = python_path

    async def run(self, ctx: AttemptContext) -> AttemptResult:
        python = ctx.python or self._python
        outcome = await self._runner.run(
            [python, "-u", "-c", COLD_MAIN],
            cwd=ctx.work_dir,
            env=ctx.env,
            output=ctx.output,
            timeout_s=ctx.timeout_s,
            stop=ctx.stop,
            grace_s=ctx.grace_s,
            script=ctx.task.script or "",
            fork=python == self._python,
        )
        return process_result(outcome, ctx, lambda: _describe(outcome.exit_code, ctx.tail()), masked=True)


def _describe(code: int | None, tail: bytes) -> str:
    lines = [ln.strip() for ln in tail.decode(errors="replace").splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    if last and ("Error" in last or "Exception" in last or ":" in last):
        # The form kiok.master.views.own_error cuts for callers without logs:Read: keep it.
        return f"{last[:500]} (exit code {code})"
    return f"exit code {code}" if code is None or code >= 0 else f"killed by signal {-code}"
