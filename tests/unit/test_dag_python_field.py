"""``python:`` (a python task's interpreter) on a task and on its DAG: the task's wins, the
DAG's is the default, YAML and the SDK agree, and it survives the stored document."""

from __future__ import annotations

import pytest

from kiok import Dag
from kiok.dag.load import spec_from_document, spec_from_yaml
from kiok.errors import DagValidationError

DOC = """
dag: {id: d, python: /opt/dag/bin/python3}
tasks:
  - {id: own, type: python, script: pass, python: /opt/task/bin/python3}
  - {id: inherits, type: python, script: pass}
"""


def test_the_task_interpreter_wins_over_the_dags() -> None:
    spec = spec_from_yaml(DOC)
    assert spec.python_for(spec.task("own")) == "/opt/task/bin/python3"
    assert spec.python_for(spec.task("inherits")) == "/opt/dag/bin/python3"
    plain = spec_from_yaml("dag: {id: d}\ntasks: [{id: t, type: python, script: pass}]")
    assert plain.python_for(plain.task("t")) is None  # the worker's own


def test_it_survives_the_stored_document() -> None:
    spec = spec_from_yaml(DOC)
    assert spec_from_document(spec.to_dict()) == spec
    assert spec.to_dict()["dag"]["python"] == "/opt/dag/bin/python3"
    assert "python" not in spec_from_yaml("dag: {id: d}\ntasks: [{id: t, script: 'true'}]").to_dict()["dag"]


def test_the_sdk_takes_it_too() -> None:
    dag = Dag("d", python="/opt/dag/bin/python3")
    dag.task("own", "pass", task_type="python", python="/opt/task/bin/python3")
    dag.task("inherits", "pass", task_type="python")
    spec = dag.to_spec()
    assert spec.python == "/opt/dag/bin/python3"
    assert [t.python for t in spec.tasks] == [t.python for t in spec_from_yaml(DOC).tasks]


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ("dag: {id: d, python: bin/python}\ntasks: [{id: t, type: python, script: pass}]", "dag.python"),
        ("dag: {id: d}\ntasks: [{id: t, type: python, script: pass, python: ' /bin/py'}]", "tasks[0].python"),
        ("dag: {id: d}\ntasks: [{id: t, type: python, script: pass, python: 3}]", "tasks[0].python"),
        ("dag: {id: d}\ntasks: [{id: t, script: 'true', python: /usr/bin/python3}]", "tasks[0].python"),
    ],
)
def test_anything_but_an_absolute_path_on_a_python_task_is_refused(doc: str, field: str) -> None:
    with pytest.raises(DagValidationError) as e:
        spec_from_yaml(doc)
    assert e.value.field == field
