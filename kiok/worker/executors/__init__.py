"""Task executors: one module per task type, all behind the ``Executor`` interface."""

from __future__ import annotations

from kiok.dag.spec import TaskType
from kiok.worker.executors.base import AttemptContext, AttemptResult, Executor
from kiok.worker.executors.http import HttpExecutor
from kiok.worker.executors.python import PythonExecutor
from kiok.worker.executors.shell import ShellExecutor
from kiok.worker.process import ProcessRunner

__all__ = ["AttemptContext", "AttemptResult", "Executor", "default_executors"]


def default_executors(
    runner: ProcessRunner, python_path: str, http_connect_timeout_s: float
) -> dict[TaskType, Executor]:
    return {
        TaskType.SHELL: ShellExecutor(runner),
        TaskType.PYTHON: PythonExecutor(runner, python_path),
        TaskType.HTTP: HttpExecutor(http_connect_timeout_s),
    }
