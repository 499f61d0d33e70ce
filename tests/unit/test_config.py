from __future__ import annotations

from pathlib import Path

import pytest

from kiok.config import KEYS, Settings, reference_markdown
from kiok.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[2]


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    f = tmp_path / "kiok.yaml"
    f.write_text("kiok:\n  worker:\n    task:\n      slots: 3\n  master.admin.port: 9000\n")
    s = Settings.load(env={}, config_file=f)
    assert s["kiok.worker.task.slots"] == 3 and s["kiok.master.admin.port"] == 9000
    s = Settings.load(env={"KIOK_WORKER_TASK_SLOTS": "5"}, config_file=f)
    assert s["kiok.worker.task.slots"] == 5
    s = Settings.load(
        env={"KIOK_WORKER_TASK_SLOTS": "5"}, config_file=f, overrides={"kiok.worker.task.slots": 7}
    )
    assert s["kiok.worker.task.slots"] == 7
    assert Settings.load(env={})["kiok.scheduler.catchup.max.runs"] == 24


def test_bad_values_and_unknown_keys_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="KIOK_WORKER_TASK_SLOTS"):
        Settings.load(env={"KIOK_WORKER_TASK_SLOTS": "many"})
    f = tmp_path / "kiok.yaml"
    f.write_text("kiok.worker.task.slot: 3\n")
    with pytest.raises(InvalidInput, match=r"kiok\.worker\.task\.slot"):
        Settings.load(env={}, config_file=f)


def test_every_key_is_documented_in_docs_configuration_md() -> None:
    assert (ROOT / "docs" / "configuration.md").read_text() == reference_markdown(), (
        "docs/configuration.md is out of date: python -c 'from kiok.config import reference_markdown as r; "
        'print(r(), end="")\' > docs/configuration.md'
    )
    assert len({k.env for k in KEYS}) == len(KEYS)
