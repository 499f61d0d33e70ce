"""A python task's own interpreter (``python:`` on the task or its DAG), in a real ``kiok
standalone``: a task naming another interpreter runs cold with it, one naming none is forked
from the worker's template, the task's field wins over the DAG's, and a path that is not
absolute is refused with a 400 naming the field."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiok.testing.process import Standalone

#: Whether the attempt was forked from the template (its parent; a cold one's is the spawner,
#: pid 1 of its namespace), and the interpreter it runs.
PROBE = """
import os, sys
print("forked" if os.getppid() != 1 else "cold", sys.executable)  # pid 1: the spawner
"""


def _task(tid: str, python: str | None = None) -> str:
    field = f"\n    python: {python}" if python else ""
    body = "\n".join("      " + line for line in PROBE.strip().splitlines())
    return f"  - id: {tid}\n    type: python{field}\n    script: |\n{body}\n"


def _probe(node: Standalone, dag_id: str) -> dict[str, tuple[str, str]]:
    run = node.wait_run(node.trigger(dag_id), 60)
    assert run["state"] == "SUCCESS", run
    out = {}
    for tid in run["tasks"]:
        kind, executable = node.log(run["runId"], tid).split()
        out[tid] = (kind, executable)
    return out


@pytest.fixture
def node(task_tmp_path: Path) -> Iterator[Standalone]:
    k = Standalone(task_tmp_path / "kiok")
    k.start()
    yield k
    k.stop()


def test_a_task_with_its_own_interpreter_runs_cold_with_it(node: Standalone, task_tmp_path: Path) -> None:
    node.register("dag: {id: plain}\ntasks:\n" + _task("plain"))
    kind, worker_python = _probe(node, "plain")["plain"]
    assert kind == "forked", "without python: a task is forked from the worker's template"
    # Another interpreter the task user can run: a virtualenv of the worker's own.
    venv = task_tmp_path / "venv"
    subprocess.run([worker_python, "-m", "venv", "--without-pip", str(venv)], check=True)
    other = str(venv / "bin" / "python")

    node.register("dag: {id: own}\ntasks:\n" + _task("own", other) + _task("default"))
    seen = _probe(node, "own")
    assert seen == {"own": ("cold", other), "default": ("forked", worker_python)}, seen

    # The DAG's interpreter for its tasks that name none; a task's own wins over it.
    tasks = _task("inherits") + _task("back", worker_python)
    node.register(f"dag: {{id: dag_level, python: {other}}}\ntasks:\n" + tasks)
    seen = _probe(node, "dag_level")
    assert seen == {"inherits": ("cold", other), "back": ("forked", worker_python)}, seen


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ("dag: {id: r, python: venv/bin/python}\ntasks: [{id: t, type: python, script: pass}]", "dag.python"),
        ("dag: {id: r}\ntasks: [{id: t, type: python, script: pass, python: python3}]", "tasks[0].python"),
        ("dag: {id: r}\ntasks: [{id: t, script: 'true', python: /usr/bin/python3}]", "tasks[0].python"),
    ],
)
def test_an_interpreter_that_is_not_an_absolute_path_is_a_400(
    node: Standalone, document: str, field: str
) -> None:
    r = node.api("POST", "/api/v1/dags", content=document, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 400, r.text
    assert field in r.text, r.text
