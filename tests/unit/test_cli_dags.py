"""``kiok dags``: registration content types, the .py compile path, list/show/delete/pause."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import httpx
import pytest
import yaml

from tests.unit.test_cli_harness import FakeMaster, body, fail, reply

YAML_DAG = "dag:\n  id: etl\ntasks:\n  - id: a\n    type: shell\n    script: echo a\n"


@pytest.fixture
def master(tmp_path: Path) -> FakeMaster:
    return FakeMaster(tmp_path / "config")


def test_yaml_and_yml_are_sent_raw_as_application_yaml(master: FakeMaster, tmp_path: Path) -> None:
    master.on("POST", "/api/v1/dags", reply(201, {"registered": "etl"}))
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.YML"
    a.write_text(YAML_DAG)
    b.write_text(YAML_DAG)
    result = master.invoke(["dags", "register", str(a), str(b)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "registered etl\nregistered etl\n"
    sent = master.sent("POST", "/api/v1/dags")
    assert [r.headers["content-type"] for r in sent] == ["application/yaml", "application/yaml"]
    assert sent[0].content == YAML_DAG.encode()


def test_json_is_sent_raw_as_application_json(master: FakeMaster, tmp_path: Path) -> None:
    master.on("POST", "/api/v1/dags", reply(201, {"registered": "j"}))
    f = tmp_path / "d.json"
    raw = '{"dag": {"id": "j"},  "tasks": [{"id": "a", "type": "shell", "script": "true"}]}'
    f.write_text(raw)
    result = master.invoke(["dags", "register", str(f)])
    assert result.exit_code == 0, result.output
    (req,) = master.sent("POST", "/api/v1/dags")
    assert req.headers["content-type"] == "application/json"
    assert req.content == raw.encode()  # unchanged, spacing and all


def test_python_file_is_compiled_and_each_dag_posted(master: FakeMaster, tmp_path: Path) -> None:
    pytest.importorskip("kiok.compile")
    master.on("POST", "/api/v1/dags", lambda r: reply(201, {"registered": body(r)["dag"]["id"]}))
    f = tmp_path / "flows.py"
    f.write_text(
        textwrap.dedent(
            """
            from kiok import Dag

            print("printed by the module")
            one = Dag("one", schedule="0 2 * * *")
            a = one.task("a", script="echo a")
            one.task("b", script="echo b", requires=[a])
            two = Dag("two")
            two.task("x", script="echo x")
            """
        )
    )
    result = master.invoke(["dags", "register", str(f)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "registered one\nregistered two\n"
    assert "printed by the module" in result.stderr
    sent = master.sent("POST", "/api/v1/dags")
    assert [r.headers["content-type"] for r in sent] == ["application/json"] * 2
    first = body(sent[0])
    assert first["dag"]["id"] == "one"
    assert [t["id"] for t in first["tasks"]] == ["a", "b"]


def test_python_compile_error_is_reported_and_nothing_posted(master: FakeMaster, tmp_path: Path) -> None:
    pytest.importorskip("kiok.compile")
    f = tmp_path / "broken.py"
    f.write_text("raise RuntimeError('boom')\n")
    result = master.invoke(["dags", "register", str(f)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {f}: ")
    assert "boom" in result.stderr
    assert "Traceback" not in result.output
    assert master.requests == []


def test_an_empty_json_list_is_an_error_not_a_silent_success(master: FakeMaster, tmp_path: Path) -> None:
    """Found by the day-one walk: ``[]`` registered nothing, said nothing and exited 0."""
    f = tmp_path / "none.json"
    f.write_text(" []\n")
    result = master.invoke(["dags", "register", str(f)])
    assert result.exit_code == 1
    assert result.stderr == f"error: {f}: an empty list of DAG documents: nothing to register\n"
    assert master.requests == []


def test_one_refused_file_does_not_stop_the_others(master: FakeMaster, tmp_path: Path) -> None:
    master.on(
        "POST",
        "/api/v1/dags",
        fail(400, "invalid_dag", "tasks[0].script: must not be empty"),
        reply(201, {"registered": "good"}),
    )
    bad, good = tmp_path / "bad.yaml", tmp_path / "good.yaml"
    bad.write_text(YAML_DAG)
    good.write_text(YAML_DAG)
    result = master.invoke(["dags", "register", str(bad), str(good)])
    assert result.exit_code == 1
    assert result.stderr == f"error: {bad}: tasks[0].script: must not be empty\n"
    assert result.stdout == "registered good\n"


def test_unsupported_extension_is_a_usage_error(master: FakeMaster, tmp_path: Path) -> None:
    f = tmp_path / "dag.txt"
    f.write_text("x")
    result = master.invoke(["dags", "register", str(f)])
    assert result.exit_code == 2
    assert "unsupported file type" in result.stderr
    assert master.requests == []


def test_register_json_prints_server_answer(master: FakeMaster, tmp_path: Path) -> None:
    master.on("POST", "/api/v1/dags", reply(201, {"registered": "etl"}))
    f = tmp_path / "a.yaml"
    f.write_text(YAML_DAG)
    result = master.invoke(["--json", "dags", "register", str(f)])
    assert json.loads(result.stdout) == {"registered": "etl"}


LISTING = {
    "dags": [
        {"dagId": "daily_etl", "schedule": "0 2 * * *", "paused": False, "tasks": 3, "version": 2},
        {"dagId": "adhoc", "schedule": None, "paused": True, "tasks": 1, "version": 1},
    ]
}


def test_list_prints_a_table(master: FakeMaster) -> None:
    master.on("GET", "/api/v1/dags", reply(200, LISTING))
    result = master.invoke(["dags", "list"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "SCHEDULE", "PAUSED", "TASKS"]
    assert lines[1].split() == ["daily_etl", "0", "2", "*", "*", "*", "no", "3"]
    assert lines[2].split() == ["adhoc", "-", "yes", "1"]
    assert lines[1].index("no") == lines[0].index("PAUSED")  # aligned columns


def test_list_json_is_the_server_document(master: FakeMaster) -> None:
    master.on("GET", "/api/v1/dags", reply(200, LISTING))
    result = master.invoke(["--json", "dags", "list"])
    assert json.loads(result.stdout) == LISTING


def test_show_prints_yaml(master: FakeMaster) -> None:
    doc = {"dagId": "etl", "tasks": [{"id": "a"}]}
    master.on("GET", "/api/v1/dags/etl", reply(200, doc))
    result = master.invoke(["dags", "show", "etl"])
    assert yaml.safe_load(result.stdout) == doc


@pytest.mark.parametrize(
    ("verb", "method", "path", "said"),
    [
        ("delete", "DELETE", "/api/v1/dags/etl", "deleted etl"),
        ("pause", "POST", "/api/v1/dags/etl/pause", "paused etl"),
        ("unpause", "POST", "/api/v1/dags/etl/unpause", "unpaused etl"),
    ],
)
def test_delete_pause_unpause(master: FakeMaster, verb: str, method: str, path: str, said: str) -> None:
    master.on(method, path, httpx.Response(204))
    result = master.invoke(["dags", verb, "etl"])
    assert result.exit_code == 0, result.output
    assert result.stdout == said + "\n"
    assert len(master.sent(method, path)) == 1


def test_ids_are_quoted_as_one_path_segment(master: FakeMaster) -> None:
    master.invoke(["dags", "show", "a/b?c"])
    assert master.requests[0].url.raw_path == b"/api/v1/dags/a%2Fb%3Fc"


def test_backfill_counts_intervals_that_had_a_run_even_with_their_ids_withheld(master: FakeMaster) -> None:
    """A caller who may not read the DAG's runs gets ``existingCount`` but no ids."""
    answer = {"dagId": "etl", "intervals": 3, "created": ["etl-1-1"], "existing": [], "existingCount": 2}
    master.on("POST", "/api/v1/dags/etl/backfill", reply(201, answer))
    result = master.invoke(["dags", "backfill", "etl", "--from", "2026-01-01", "--to", "2026-01-03"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "1 run(s) created, 2 interval(s) already had a run"


def test_with_json_each_refused_file_is_one_json_error(master: FakeMaster, tmp_path: Path) -> None:
    """The operability probe of session 28: ``kiok --json dags register`` printed refusals as
    plain text, as no other command does with ``--json``."""
    cycle = "tasks: cycle: x -> y -> x (each task requires the one before it)"
    master.on("POST", "/api/v1/dags", fail(400, "invalid_dag", cycle))
    bad, unreadable = tmp_path / "bad.yaml", tmp_path / "broken.yaml"
    bad.write_text(YAML_DAG)
    unreadable.write_bytes(b"\xff\xfe")
    result = master.invoke(["--json", "dags", "register", str(bad), str(unreadable)])
    assert result.exit_code == 1 and result.stdout == ""
    first, second = (json.loads(line)["error"] for line in result.stderr.splitlines())
    assert first == {"code": "invalid_dag", "message": cycle, "file": str(bad)}
    assert second == {**first, "file": str(unreadable)}
