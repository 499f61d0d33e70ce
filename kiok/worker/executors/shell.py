"""``shell`` tasks: the script runs under /bin/sh, or under its own interpreter when it
starts with a shebang (``#!/bin/bash``), in which case it is written to a file first."""

from __future__ import annotations

from kiok.worker.executors.base import AttemptContext, AttemptResult, process_result
from kiok.worker.process import ProcessRunner

#: Longer scripts go through a file rather than an argv string (Linux caps one argument).
_MAX_INLINE = 64 * 1024


class ShellExecutor:
    def __init__(self, runner: ProcessRunner) -> None:
        self._runner = runner

    async def run(self, ctx: AttemptContext) -> AttemptResult:
        script = ctx.task.script or ""
        files = {}
        if script.startswith("#!") or len(script) > _MAX_INLINE:
            path = ctx.work_dir / "task.sh"
            files["task.sh"] = (script, 0o700)
            argv = [str(path)] if script.startswith("#!") else ["/bin/sh", str(path)]
        else:
            argv = ["/bin/sh", "-c", script]
        outcome = await self._runner.run(
            argv,
            cwd=ctx.work_dir,
            env=ctx.env,
            output=ctx.output,
            timeout_s=ctx.timeout_s,
            stop=ctx.stop,
            grace_s=ctx.grace_s,
            files=files,
        )
        return process_result(outcome, ctx, lambda: _describe_exit(outcome.exit_code))


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"
