"""The policy editor's JSON check (``views/settings/jsonproblem.js``), run with node when it is
installed: the line of a syntax error, from the engine's position or its line and column."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parents[2] / "kiok/ui/static/js/views/settings/jsonproblem.js"


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_a_json_syntax_error_is_placed_at_its_line(tmp_path: Path) -> None:
    module = tmp_path / "jsonproblem.mjs"
    module.write_text(MODULE.read_text())
    cases = {
        '{"Statement": []}': None,
        '{\n  "Statement": [\n    {"Effect": "Allow"}\n    {"Effect": "Deny"}\n  ]\n}': 4,
        '{\n  "a": 1,\n}': 3,
        '{\n  "a": [1,\n': 3,
    }
    script = (
        f"import {{jsonProblem}} from {json.dumps(str(module))};"
        f"const cases = {json.dumps(list(cases))};"
        "console.log(JSON.stringify(cases.map((c) => { const p = jsonProblem(c); return p && p.line; })));"
    )
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == list(cases.values())
