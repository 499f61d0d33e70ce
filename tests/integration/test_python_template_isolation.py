"""Python tasks forked from the worker's python template, in a real ``kiok standalone`` running
as root as CI does: the forked task is the task user's, in its own namespace, and cannot read
what kiok holds (its key, data directory, its process's environment); a module that
``kiok.worker.python.preload`` names but cannot be imported is said in kiok's log at start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kiok.testing.process import Standalone

PROBE = """
import os
def probe(what, path):
    try:
        open(path, "rb").read(1)
        print("LEAK", what)
    except OSError:
        print("denied", what)
print("forked" if os.getppid() != 1 else "cold", os.getuid())  # pid 1: the spawner
probe("master.key", os.environ["KIOK_PARAM_DATA"] + "/master.key")
probe("state", os.environ["KIOK_PARAM_DATA"] + "/state/CURRENT")
probe("environ", f"/proc/{os.environ['KIOK_PARAM_PID']}/environ")
probe("template-environ", f"/proc/{os.getppid()}/environ")
try:
    os.listdir(os.environ["KIOK_PARAM_DATA"])
    print("LEAK data-dir")
except OSError:
    print("denied data-dir")
"""


@pytest.fixture
def standalone(task_tmp_path: Path) -> Iterator[Standalone]:
    node = Standalone(task_tmp_path / "kiok", {"KIOK_WORKER_PYTHON_PRELOAD": "json,no_such_module_kiok"})
    node.start()
    yield node
    node.stop()


def test_a_forked_python_task_cannot_reach_what_kiok_holds(standalone: Standalone) -> None:
    k = standalone
    assert k.proc is not None
    k.wait_for(lambda: "no_such_module_kiok" in k.read_log(), 60, "the preload error in the log")
    lines = [ln for ln in k.read_log().splitlines() if "kiok.worker.python.preload" in ln]
    assert len(lines) == 1 and "cannot import no_such_module_kiok (ModuleNotFoundError" in lines[0], lines
    indented = "\n".join("      " + line for line in PROBE.strip().splitlines())
    k.register(
        f"""
dag: {{id: forked_probe, params: {{data: "", pid: ""}}}}
tasks:
  - id: probe
    type: python
    script: |
{indented}
"""
    )
    run = k.wait_run(k.trigger("forked_probe", {"data": str(k.data_dir), "pid": str(k.proc.pid)}), 60)
    assert run["state"] == "SUCCESS", run
    log = k.log(run["runId"], "probe").splitlines()
    kind, uid = log[0].split()
    assert kind == "forked" and int(uid) != 0, log
    assert log[1:] == [
        "denied master.key",
        "denied state",
        "denied environ",
        "denied template-environ",
        "denied data-dir",
    ], log
