"""``shell`` tasks: the script runs under /bin/sh, or under its own interpreter when it
starts with a shebang (``#!/bin/bash``). Either way it reaches the process as ``/dev/fd/3``
(see ``kiok.worker.spawner``): never an argument, never a file on disk."""

from __future__ import annotations

from kiok.worker.executors.base import AttemptContext, AttemptResult, process_result
from kiok.worker.process import ProcessRunner

_SCRIPT = "/dev/fd/3"


class ShellExecutor:
    def __init__(self, runner: ProcessRunner) -> None:
        self._runner = runner

    async def run(self, ctx: AttemptContext) -> AttemptResult:
        script = ctx.task.script or ""
        argv = [_SCRIPT] if script.startswith("#!") else ["/bin/sh", _SCRIPT]
        outcome = await self._runner.run(
            argv,
            cwd=ctx.work_dir,
            env=ctx.env,
            output=ctx.output,
            timeout_s=ctx.timeout_s,
            stop=ctx.stop,
            grace_s=ctx.grace_s,
            script=script,
        )
        return process_result(outcome, ctx, lambda: _describe_exit(outcome.exit_code))


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"
