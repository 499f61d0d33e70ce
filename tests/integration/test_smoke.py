"""The basic contract from outside, and the shared contract smoke script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kiok.testing.process import Standalone, kiok_executable

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT.parent / "shared" / "tools" / "contract_smoke.py"


def test_contract_smoke_script_passes() -> None:
    if not SMOKE.exists():
        if os.environ.get("CI") == "true":  # CI lays shared/ beside the clone: never skip there
            pytest.fail(f"{SMOKE} is missing")
        pytest.skip("shared/tools/contract_smoke.py is not beside this checkout")
    out = subprocess.run(
        [sys.executable, str(SMOKE), "--kiok", kiok_executable()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("OK")


def test_chain_runs_in_order_with_logs(shared_kiok: Standalone) -> None:
    dag = shared_kiok.register(
        """
dag: {id: chain3, params: {who: nobody}}
tasks:
  - {id: a, script: 'echo "a ${params.who} $KIOK_TASK_ID $KIOK_ATTEMPT $KIOK_PARAM_WHO"'}
  - {id: b, requires: [a], type: python, script: 'import os; print("b", os.environ["KIOK_RUN_ID"])'}
  - {id: c, requires: [b], script: 'echo c'}
"""
    )
    run_id = shared_kiok.trigger(dag, {"who": "me"})
    run = shared_kiok.wait_run(run_id)
    assert run["state"] == "SUCCESS"
    tasks = run["tasks"]
    assert [tasks[t]["state"] for t in "abc"] == ["SUCCESS"] * 3
    assert (
        tasks["a"]["endedAt"] <= tasks["b"]["startedAt"] <= tasks["b"]["endedAt"] <= tasks["c"]["startedAt"]
    )
    assert shared_kiok.log(run_id, "a") == "a me a 1 me\n"
    assert shared_kiok.log(run_id, "b") == f"b {run_id}\n"
    run_log = shared_kiok.log(run_id, "__run__")
    assert (
        "assigned to worker" in run_log
        and "a attempt 1 started" in run_log
        and "run finished SUCCESS" in run_log
    )
