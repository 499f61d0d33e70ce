"""The pure parts behind the admin UI's dashboard and register pages: the dashboard's
aggregates, a field path's line in a DAG document, and cron expressions in words (the UI's
``cron.js``, run with node when it is installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from kiok.core.dashboard import RunSample, summarize
from kiok.dag.locate import line_of

CRON_JS = Path(__file__).resolve().parents[2] / "kiok" / "ui" / "static" / "js" / "cron.js"


def sample(run_id: str, state: str, created: int, ended: int | None, **kw: object) -> RunSample:
    return RunSample(run_id, "d", state, created, created, ended, **kw)  # type: ignore[arg-type]


def test_summarize_counts_series_and_lists() -> None:
    now = 100_000
    runs = [
        sample("old", "SUCCESS", 1_000, 2_000),  # ended before the 60 s window
        sample("ok", "SUCCESS", 50_000, 55_000, task_ends_ms=(52_000, 55_000)),
        sample("bad", "FAILED", 60_000, 70_000, task_ends_ms=(70_000,)),
        sample("run", "RUNNING", 90_000, None),
        sample("wait", "PENDING", 95_000, None, waiting="no worker has labels ['gpu']"),
    ]
    d = summarize(runs, now, 60_000, 6)
    assert d.counts == {"PENDING": 1, "RUNNING": 1, "SUCCESS": 1, "FAILED": 1, "CANCELLED": 0}
    assert [b.start_ms for b in d.series] == [40_000, 50_000, 60_000, 70_000, 80_000, 90_000]
    assert [b.runs for b in d.series] == [0, 1, 1, 0, 0, 2]
    assert [b.tasks for b in d.series] == [0, 2, 0, 1, 0, 0]
    assert [s.run_id for s in d.running] == ["run"]
    assert [s.run_id for s in d.waiting] == ["wait"]
    assert [s.run_id for s in d.failed] == ["bad"]


def test_line_of_a_field_path() -> None:
    text = "dag: {id: x}\ntasks:\n  - id: a\n    script: true\n  - id: b\n    requires: [zz]\n"
    assert line_of(text, "tasks[0].script") == 4
    assert line_of(text, "tasks[1].requires") == 6
    assert line_of(text, "tasks.b.id") == 5  # a task named by its id
    assert line_of(text, "dag.nope") == 1  # an unknown key: the deepest part found
    assert line_of(text, None) is None
    assert line_of("dag: [", "dag") is None
    assert line_of('{"dag": {"id": "x"},\n "tasks": [\n {"id": 1}]}', "tasks[0].id") == 3


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_cron_in_words(tmp_path: Path) -> None:
    module = tmp_path / "cron.mjs"
    module.write_text(CRON_JS.read_text())
    cases = {
        "0 2 * * *|Europe/Berlin": "at 02:00 every day, Europe/Berlin",
        "*/5 * * * *|": "every 5 minutes, UTC",
        "0 * * * *|": "every hour, on the hour, UTC",
        "15 */2 * * *|": "every 2 hours at minute 15, UTC",
        "30 6 * * 1-5|UTC": "at 06:30 on weekdays (Monday to Friday), UTC",
        "0 9 * * 1|": "at 09:00 on Monday, UTC",
        "0 0 1 * *|": "at 00:00 on the 1st of every month, UTC",
        "0 8,20 * * *|": "at 08:00 and 20:00 every day, UTC",
        "1-5 * * * *|Asia/Tokyo": "1-5 * * * * (Asia/Tokyo)",
        "|": "manual only",
    }
    script = (
        f"import {{cronWords}} from {json.dumps(str(module))};"
        f"const cases = {json.dumps(list(cases))};"
        "const words = cases.map((c) => cronWords(...c.split('|')));"
        "console.log(JSON.stringify(words));"
    )
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == list(cases.values())
