"""API fuzzing with schemathesis against the OpenAPI document of a real standalone: no 5xx
and no leaked secret, authenticated and not. A bounded number of examples here; more with

    KIOK_FUZZ_EXAMPLES=200 .venv/bin/python -m pytest tests/integration/test_api_fuzz.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone

SECRET = "fuzz-secret-value-9731"
EXAMPLES = os.environ.get("KIOK_FUZZ_EXAMPLES", "8")


def _st() -> str | None:
    return shutil.which("st", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(_st() is None, reason="schemathesis is not installed (pip install -e '.[dev]')")
@pytest.mark.parametrize("authenticated", [True, False])
def test_fuzzed_requests_never_get_a_5xx_or_a_secret(
    standalone_factory: Any, tmp_path: Path, authenticated: bool
) -> None:
    k: Standalone = standalone_factory(env={"KIOK_AUTH_LOGIN_MAX_FAILURES": "100000"})
    k.api("POST", "/api/v1/connections", json={"connectionId": "fz", "properties": {"value": SECRET}})
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(k.api("GET", "/api/v1/openapi.json").json()))
    headers = ["-H", f"Authorization: Bearer {k.token}"] if authenticated else []
    out = subprocess.run(
        [
            _st() or "st",
            "run",
            str(schema),
            "--url",
            k.url,
            *headers,
            "--checks",
            "not_a_server_error",
            "--max-examples",
            EXAMPLES,
            "--phases",
            "examples,coverage,fuzzing",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    report = out.stdout + out.stderr
    assert out.returncode == 0, report[-4000:]
    assert "test cases" in report or "generated" in report.lower(), report[-2000:]  # it did run
    assert SECRET not in report and ADMIN_PASSWORD not in report
    assert "Traceback" not in k.read_log()
