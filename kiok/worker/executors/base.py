"""The executor interface: run one attempt of one task, report how it ended."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kiok.dag.spec import TaskSpec
from kiok.worker.process import ProcessOutcome
from kiok.worker.stop import StopSignal


@dataclass
class AttemptContext:
    run_id: str
    #: The task with placeholders already resolved in ``script`` and ``config``.
    task: TaskSpec
    attempt: int
    #: This attempt's own working directory: created when its process starts, removed after.
    work_dir: Path
    #: Variables this attempt adds to the worker's task environment.
    env: Mapping[str, str]
    timeout_s: float
    grace_s: float
    stop: StopSignal
    output: Callable[[bytes], None]
    #: The last few KiB of output, for a useful ``error`` (e.g. a Python exception line).
    tail: Callable[[], bytes]
    #: The interpreter a python task or its DAG names (``DagSpec.python_for``); ``None``:
    #: the worker's own.
    python: str | None = None
    #: Writes a line of kiok's own into the task log (``[kiok] ...``): not the task's output,
    #: which can never begin a line so (``kiok.worker.logship``).
    note: Callable[[str], None] = lambda text: None
    #: Masks the values of the run's secrets in a text (for an ``error`` an executor masks
    #: itself: ``AttemptResult.error_masked``).
    mask: Callable[[str], str] = lambda text: text


@dataclass(frozen=True)
class AttemptResult:
    ok: bool
    exit_code: int | None = None
    error: str | None = None
    timed_out: bool = False
    stopped: bool = False
    #: A short outcome for the run log where there is no exit code (an http task: ``HTTP 200``).
    detail: str | None = None
    #: ``error`` quotes only output already masked (``AttemptContext.tail``) besides kiok's
    #: own words: masking it again could hide those words (a secret ``code`` in ``(exit code
    #: 1)``), the form run views cut output by for callers without ``logs:Read``.
    error_masked: bool = False


class Executor(Protocol):
    async def run(self, ctx: AttemptContext) -> AttemptResult:
        """Run the attempt to its end. Must return (not raise) on task failure, honour
        ``ctx.stop`` and ``ctx.timeout_s``, and send all output through ``ctx.output``."""
        ...


def process_result(
    outcome: ProcessOutcome,
    ctx: AttemptContext,
    describe_failure: Callable[[], str],
    *,
    masked: bool = False,
) -> AttemptResult:
    """Map a finished child process to an attempt result; ``masked``: ``describe_failure``
    quotes only ``ctx.tail()`` (``AttemptResult.error_masked``)."""
    if outcome.error is not None:
        return AttemptResult(False, outcome.exit_code, outcome.error)
    if outcome.stopped:
        return AttemptResult(False, outcome.exit_code, "cancelled", stopped=True)
    if outcome.timed_out:
        return AttemptResult(False, outcome.exit_code, f"timed out after {ctx.timeout_s:g}s", timed_out=True)
    if outcome.exit_code == 0:
        return AttemptResult(True, 0)
    return AttemptResult(False, outcome.exit_code, describe_failure(), error_masked=masked)
