"""kiok.compile: run a Python DAG file once and collect its module-level Dags."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kiok.compile import compile_file, main
from kiok.dag.load import spec_from_document
from kiok.errors import DagValidationError

TWO_DAGS = textwrap.dedent(
    """
    from kiok import Dag, secret

    print("noise that must not reach stdout")

    def _make(name):
        d = Dag(name, schedule="0 * * * *")
        d.task("only", script="echo " + name)
        return d

    first = Dag("first")
    a = first.task("a", script="echo a")
    first.task("b", script="echo b", requires=[a])
    second = _make("second")
    alias = first
    not_a_dag = {"dag": "no"}
    """
)


def _write(tmp_path: Path, body: str, name: str = "dags.py") -> Path:
    p = tmp_path / name
    p.write_text(body)
    return p


def test_two_module_level_dags(tmp_path: Path) -> None:
    specs = compile_file(_write(tmp_path, TWO_DAGS))
    assert [s.id for s in specs] == ["first", "second"]
    assert specs[0].task("b").requires == ("a",)
    assert specs[1].schedule == "0 * * * *"


def test_sibling_imports_work(tmp_path: Path) -> None:
    _write(tmp_path, "SCRIPT = 'echo from helper'\n", "kiok_test_helper_mod.py")
    p = _write(
        tmp_path,
        "from kiok import Dag\nfrom kiok_test_helper_mod import SCRIPT\n"
        "d = Dag('x')\nd.task('a', script=SCRIPT)\n",
    )
    assert compile_file(p)[0].tasks[0].script == "echo from helper"


def test_no_dag_is_an_error(tmp_path: Path) -> None:
    p = _write(tmp_path, "x = 1\n")
    with pytest.raises(DagValidationError, match=f"no module-level Dag found in {p}"):
        compile_file(p)


def test_failing_module_and_invalid_dag(tmp_path: Path) -> None:
    with pytest.raises(DagValidationError, match="ZeroDivisionError"):
        compile_file(_write(tmp_path, "1/0\n", "boom.py"))
    bad = "from kiok import Dag\nd = Dag('bad')\nd.task('a', script='x', requires=['zz'])\n"
    with pytest.raises(DagValidationError, match=r"DAG 'bad'.*unknown task 'zz'"):
        compile_file(_write(tmp_path, bad, "bad.py"))
    dup = "from kiok import Dag\nx = Dag('same')\nx.task('a', script='x')\n"
    dup += "y = Dag('same')\ny.task('a', script='x')\n"
    with pytest.raises(DagValidationError, match="two DAGs with id 'same'"):
        compile_file(_write(tmp_path, dup, "dup.py"))
    with pytest.raises(DagValidationError, match="no such file"):
        compile_file(tmp_path / "missing.py")


def test_main_prints_json_array(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(_write(tmp_path, TWO_DAGS))]) == 0
    out, err = capsys.readouterr()
    docs = json.loads(out)
    assert [spec_from_document(d).id for d in docs] == ["first", "second"]
    assert "noise" in err


def test_main_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _write(tmp_path, "x = 1\n")
    assert main([str(p)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "no module-level Dag found" in err
    assert main([]) == 2


def test_python_dash_m(tmp_path: Path) -> None:
    p = _write(tmp_path, TWO_DAGS)
    ok = subprocess.run(
        [sys.executable, "-m", "kiok.compile", str(p)], capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0, ok.stderr
    assert [d["dag"]["id"] for d in json.loads(ok.stdout)] == ["first", "second"]
    bad = subprocess.run(
        [sys.executable, "-m", "kiok.compile", str(_write(tmp_path, "x = 1\n", "none.py"))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "no module-level Dag found" in bad.stderr and bad.stdout == ""
