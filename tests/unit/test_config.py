from __future__ import annotations

import re
from pathlib import Path

import pytest

from kiok.cli.output import text
from kiok.config import KEYS, Settings, reference_markdown, unknown_variables
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


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KIOK_MASTER_ADMIN_PORT", "\u0668\u0660\u0668\u0660"),  # Arabic-Indic 8080: int() takes it
        ("KIOK_WORKER_TASK_SLOTS", "1_0"),  # int() reads 10
        ("KIOK_WORKER_TASK_SLOTS", "+5"),
        ("KIOK_WORKER_TASK_SLOTS", "\uff15"),  # fullwidth 5
    ],
)
def test_an_int_setting_takes_ascii_digits_only(name: str, value: str) -> None:
    with pytest.raises(InvalidInput, match=f"{name}.*expected int") as e:
        Settings.load(env={name: value})
    assert "\n" not in str(e.value)


def test_ascii_numbers_still_load() -> None:
    s = Settings.load(env={"KIOK_MASTER_ADMIN_PORT": " 8081 ", "KIOK_WORKER_TASK_SLOTS": "12"})
    assert s["kiok.master.admin.port"] == 8081 and s["kiok.worker.task.slots"] == 12
    with pytest.raises(InvalidInput, match="out of range"):
        Settings.load(env={"KIOK_WORKER_TASK_SLOTS": "-1"})


def test_every_key_is_documented_in_docs_configuration_md() -> None:
    assert (ROOT / "docs" / "configuration.md").read_text() == reference_markdown(), (
        "docs/configuration.md is out of date: python -c 'from kiok.config import reference_markdown as r; "
        'print(r(), end="")\' > docs/configuration.md'
    )
    assert len({k.env for k in KEYS}) == len(KEYS)


def test_an_unknown_key_in_a_config_file_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    f = tmp_path / "kiok.yaml"
    f.write_text("kiok:\n  worker:\n    task:\n      slot: 3\n")
    with pytest.raises(
        InvalidInput,
        match=r"unknown key 'kiok\.worker\.task\.slot' \(did you mean kiok\.worker\.task\.slots\?\)",
    ):
        Settings.load(env={}, config_file=f)
    f.write_text("something.else: 1\n")
    with pytest.raises(InvalidInput, match=r"unknown key 'something\.else'$"):
        Settings.load(env={}, config_file=f)


def test_an_unknown_kiok_variable_is_a_warning_with_a_suggestion() -> None:
    env = {
        "KIOK_WORKER_TASK_SLOT": "4",
        "KIOK_WORKER_TASK_SLOTS": "2",
        "KIOK_ELSEWHERE_THING": "x",
        "KIOK_MASTER": "localhost:1",  # told as known by the caller (the CLI's own)
        "KIOK_RUN_ID": "r",  # what kiok sets for the tasks it runs
        "KIOK_PARAM_REGION": "eu",
        "PATH": "/bin",
        "kiok_worker_task_slot": "lower case: not ours",
    }
    s = Settings.load(env=env, known_env=["KIOK_MASTER"])
    assert s["kiok.worker.task.slots"] == 2
    assert s.warnings == (
        "unknown environment variable KIOK_ELSEWHERE_THING ignored",
        "unknown environment variable KIOK_WORKER_TASK_SLOT ignored (did you mean KIOK_WORKER_TASK_SLOTS?)",
    )


def test_every_kiok_variable_the_docs_name_is_known() -> None:
    """A variable the documentation tells people to set is never reported as unknown."""
    from kiok.cli.main import cli
    from kiok.cli.settings import cli_variables

    named = set()
    for doc in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        named |= set(re.findall(r"\b(KIOK_[A-Z0-9_]*[A-Z0-9])\b", doc.read_text()))
    assert unknown_variables(dict.fromkeys(named, "x"), cli_variables(cli)) == []


def test_the_cli_own_variables_are_known() -> None:
    from kiok.cli.main import cli
    from kiok.cli.settings import cli_variables

    assert {"KIOK_MASTER", "KIOK_USER_TOKEN", "KIOK_ADMIN_SOCKET", "KIOK_TLS_CA"} <= cli_variables(cli)


def test_sources_and_redaction(tmp_path: Path) -> None:
    f = tmp_path / "kiok.yaml"
    f.write_text("kiok.worker.labels: gpu\nkiok.worker.join.token: from-file\n")
    s = Settings.load(
        env={"KIOK_WORKER_TASK_SLOTS": "3", "KIOK_MASTER_KEY": "k" * 40},
        config_file=f,
        overrides={"kiok.base.data.dir": "/d"},
        override_names={"kiok.base.data.dir": "--data-dir"},
    )
    shown = {e.key: e for e in s.explain()}
    assert (shown["kiok.worker.task.slots"].value, shown["kiok.worker.task.slots"].source) == (3, "env")
    assert shown["kiok.worker.task.slots"].origin == "KIOK_WORKER_TASK_SLOTS"
    assert (shown["kiok.worker.labels"].source, shown["kiok.worker.labels"].origin) == ("file", str(f))
    assert (shown["kiok.base.data.dir"].source, shown["kiok.base.data.dir"].origin) == ("flag", "--data-dir")
    assert (shown["kiok.log.level"].value, shown["kiok.log.level"].source) == ("INFO", "default")
    assert shown["kiok.master.key"].value == shown["kiok.worker.join.token"].value == "(redacted)"
    assert shown["kiok.iam.admin.password"].value == ""  # empty: nothing to hide
    assert {k.name for k in KEYS if k.secret} == {
        "kiok.master.key",
        "kiok.iam.admin.password",
        "kiok.worker.join.token",
        "kiok.internal.auth.tokens",
        "kiok.joblog.s3.secret.key",
        "kiok.backup.s3.secret.key",
    }


def test_docs_configuration_md_and_the_settings_object_name_the_same_settings() -> None:
    """Parsed, not only compared as text: every row of the reference is a setting with the
    same variable, type and default, and every setting has its row."""
    rows = {}
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0].startswith("`kiok."):
            rows[cells[0].strip("`")] = (cells[1].strip("`"), cells[2], cells[3])
    for key in KEYS:
        assert key.name in rows, f"{key.name} is missing from docs/configuration.md"
        if isinstance(key.default, bool):  # as `kiok config show` prints it, not Python's True
            default = f"`{text(key.default)}`"
        else:
            default = f"`{key.default}`" if key.default != "" else "(empty)"
        assert rows[key.name] == (key.env, key.type.__name__, default), key.name
    assert set(rows) == {k.name for k in KEYS}, set(rows) - {k.name for k in KEYS}
    # and each setting is read by some module (a documented setting that does nothing is a lie)
    source = "\n".join(p.read_text() for p in (ROOT / "kiok").rglob("*.py") if p.name != "config.py")
    unread = [k.name for k in KEYS if f'"{k.name}"' not in source]
    assert not unread, f"settings no module reads: {unread}"


def test_every_bound_past_the_general_rule_is_given_in_its_line() -> None:
    """The lifecycle probe of session 29: kiok.worker.refused.retry.ms refused 12 as out of
    range (100 to 2^53) while its line named no minimum."""
    shown = {5 * 1024 * 1024: "5 MiB"}
    for key in KEYS:
        if key.type in (int, float):
            for bound in (key.at_least if key.at_least > 1 else None, key.at_most):
                if bound is not None:
                    said = (shown.get(bound, str(bound)), str(bound - 1))  # "more than 150"
                    assert any(s in key.doc for s in said), (key.name, bound)
