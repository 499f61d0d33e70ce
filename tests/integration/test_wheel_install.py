"""The built wheel is all a user needs (issue 17 §5): it installs into a fresh virtualenv with
its declared dependencies from the package index (so a dependency missing from pyproject.toml
fails here), with no editable install and no source tree on the path; that venv's ``kiok
standalone`` starts, serves the UI, and its ``kiok`` CLI logs in, registers a DAG and runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.integration.test_cli import KiokCli, show
from tests.wheel_build import ROOT, build_wheel

pytestmark = pytest.mark.slow

DAG = """\
dag: {id: from_wheel, params: {who: wheel}}
tasks:
  - {id: hello, type: shell, script: 'echo "hello ${params.who}"'}
  - {id: done, type: python, requires: [hello], script: 'print("done")'}
"""


def run(argv: list[str], cwd: Path, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIOK_", "PYTHON", "VIRTUAL_ENV"))}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, show(done)
    return done.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel (and its dependencies from the index) installed."""
    work = tmp_path_factory.mktemp("wheel-install")
    wheel = build_wheel(work)
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], work)
    run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], work, timeout=600)
    return venv


def test_the_installed_wheel_runs_a_dag(venv: Path, tmp_path: Path) -> None:
    # kiok comes from the venv's site-packages, not from the source tree or an editable hook.
    where = run([str(venv / "bin" / "python"), "-c", "import kiok; print(kiok.__file__)"], tmp_path)
    assert where.startswith(str(venv / "lib")) and not where.startswith(str(ROOT / "kiok")), where
    installed = run([str(venv / "bin" / "pip"), "list", "--format", "json", "--editable"], tmp_path)
    assert json.loads(installed) == []

    node = Standalone(tmp_path / "kiok")
    node.executable = str(venv / "bin" / "kiok")
    node.start(timeout_s=60)
    try:
        page = node.http("GET", node.url + "/")
        assert page.status_code == 200 and "<html" in page.text.lower()

        cli = KiokCli(f"127.0.0.1:{node.admin_port}", tmp_path / "config")
        cli.executable = str(venv / "bin" / "kiok")
        cli.ok("login", "--user", "admin", "--password", ADMIN_PASSWORD)
        (tmp_path / "dag.yaml").write_text(DAG)
        assert cli.ok("dags", "register", str(tmp_path / "dag.yaml")).startswith("registered ")
        done = cli("trigger", "from_wheel", "--wait", timeout=120)
        assert done.returncode == 0, show(done) + node.read_log()[-3000:]
        (run_id,) = [r["runId"] for r in json.loads(cli.ok("--json", "runs", "list"))["runs"]]
        assert node.log(run_id, "hello") == "hello wheel\n"
        assert node.log(run_id, "done") == "done\n"
    finally:
        node.stop()
