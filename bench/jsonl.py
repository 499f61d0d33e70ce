"""Where bench results go: one JSON line per measurement, printed and appended to a file in
``bench/results/`` so that docs/performance.md can cite the run it quotes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


def append_result(path: Path, record: dict[str, Any]) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(line + "\n")
