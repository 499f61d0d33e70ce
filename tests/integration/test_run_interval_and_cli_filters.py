"""Against a real ``kiok standalone``: the interval placeholders of backfilled and manual
runs (``${run.interval.*}`` and ``KIOK_INTERVAL_*`` in each run's task log), an SDK DAG with
``notify``/``sla`` compiled by ``python -m kiok.compile`` and registered by ``kiok dags
register``, and ``kiok runs list --since/--until`` (relative and ISO times, bad values)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.integration.test_cli import KiokCli, cli_for, show, write

pytestmark = pytest.mark.slow

ECHO = """\
echo "start=${run.interval.start} end=${run.interval.end}"
echo "env=$KIOK_INTERVAL_START/$KIOK_INTERVAL_END"
"""

SDK_DAGS = """\
from kiok import Dag, conn, email, secret, webhook

watched = Dag(
    "sdk_watched",
    sla="10m",
    run_timeout="1h",
    notify={
        "on_failure": [
            webhook(conn("alerts", "url"), headers={"X-Token": secret("alert_token")}),
            email("smtp-main", "ops@example.com"),
        ],
        "on_sla_miss": [email("smtp-main", ["ops@example.com", "lead@example.com"])],
    },
)
watched.task("a", script="echo ${run.interval.start}")
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    standalone = Standalone(tmp_path_factory.mktemp("interval") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
    standalone.start()
    yield standalone
    standalone.stop()


@pytest.fixture(scope="module")
def cli(node: Standalone, tmp_path_factory: pytest.TempPathFactory) -> KiokCli:
    logged_in = cli_for(node, tmp_path_factory.mktemp("interval-cli") / "config")
    logged_in.ok("login", "--user", "admin", "--password", ADMIN_PASSWORD)
    return logged_in


def test_each_backfilled_run_sees_the_interval_it_stands_for(node: Standalone) -> None:
    dag = node.register(
        'dag: {id: iv_daily, schedule: "0 6 * * *", max_active_runs: 3}\n'
        "tasks:\n  - id: show\n    script: |\n" + "".join(f"      {line}\n" for line in ECHO.splitlines())
    )
    r = node.api("POST", f"/api/v1/dags/{dag}/backfill", json={"from": "2026-01-01", "to": "2026-01-03"})
    assert r.status_code == 201, r.text
    created = r.json()["created"]
    assert len(created) == 3
    by_start: dict[str, str] = {}
    for run_id in created:
        run = node.wait_run(run_id, timeout_s=60)
        assert run["state"] == "SUCCESS", run
        by_start[run["interval"]["start"]] = node.log(run_id, "show")
    for day in (1, 2, 3):
        start, end = f"2026-01-0{day}T06:00:00Z", f"2026-01-0{day + 1}T06:00:00Z"
        log = by_start[f"2026-01-0{day}T06:00:00.000Z"]
        assert log == f"start={start} end={end}\nenv={start}/{end}\n", log


def test_a_manual_run_stands_for_its_trigger_time(node: Standalone) -> None:
    dag = node.register(
        "dag: {id: iv_manual}\ntasks:\n  - id: show\n    script: |\n"
        + "".join(f"      {line}\n" for line in ECHO.splitlines())
    )
    run = node.wait_run(node.trigger(dag))
    assert run["state"] == "SUCCESS", run
    at = run["createdAt"][:19] + "Z"  # to the second, as the placeholders give it
    assert node.log(run["runId"], "show") == f"start={at} end={at}\nenv={at}/{at}\n"


def test_an_unknown_run_placeholder_is_refused_at_registration(node: Standalone) -> None:
    r = node.api(
        "POST",
        "/api/v1/dags",
        content="dag: {id: iv_bad}\ntasks: [{id: a, script: 'echo ${run.interval.middle}'}]\n",
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 400 and "${run.interval.middle}" in r.text and "tasks[0].script" in r.text, r.text


def test_an_sdk_dag_with_notify_and_sla_compiles_and_registers(cli: KiokCli, tmp_path: Path) -> None:
    source = write(tmp_path, "watched.py", SDK_DAGS)
    compiled = subprocess.run(
        [sys.executable, "-m", "kiok.compile", str(source)], capture_output=True, text=True, check=False
    )
    assert compiled.returncode == 0, compiled.stderr
    out = write(tmp_path, "watched.json", compiled.stdout)
    assert cli.ok("dags", "register", str(out)) == "registered sdk_watched\n"
    spec = json.loads(cli.ok("--json", "dags", "show", "sdk_watched"))["spec"]["dag"]
    assert spec["sla"] == "600000ms" and spec["run_timeout"] == "3600000ms", spec
    assert spec["notify"] == {
        "on_failure": [
            {"webhook": {"url": "${conn.alerts.url}", "headers": {"X-Token": "${secret.alert_token}"}}},
            {"email": {"connection": "smtp-main", "to": ["ops@example.com"]}},
        ],
        "on_sla_miss": [
            {"email": {"connection": "smtp-main", "to": ["ops@example.com", "lead@example.com"]}}
        ],
    }


def _listed(cli: KiokCli, *args: str) -> set[str]:
    answer = json.loads(cli.ok("--json", "runs", "list", "--dag", "iv_list", *args))
    return {run["runId"] for run in answer["runs"]}


def test_runs_list_since_and_until(cli: KiokCli, node: Standalone) -> None:
    dag = node.register("dag: {id: iv_list}\ntasks: [{id: a, script: 'true'}]\n")
    first = node.wait_run(node.trigger(dag))
    second_id = node.trigger(dag)
    second = node.wait_run(second_id)
    if second["createdAt"] == first["createdAt"]:  # the same millisecond: make them differ
        second = node.wait_run(node.trigger(dag))
    both = {first["runId"], second["runId"]}
    assert both <= _listed(cli, "--since", "1h")
    assert _listed(cli, "--until", "1h") == set()  # none is an hour old
    assert _listed(cli, "--since", "2d", "--until", "1d") == set()
    assert _listed(cli, "--since", second["createdAt"]) >= {second["runId"]}
    assert first["runId"] not in _listed(cli, "--since", second["createdAt"])
    assert first["runId"] in _listed(cli, "--until", second["createdAt"])
    assert second["runId"] not in _listed(cli, "--until", second["createdAt"])
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert both <= _listed(cli, "--until", tomorrow)
    table = cli.ok("runs", "list", "--dag", "iv_list", "--since", "30m")
    assert first["runId"] in table and second["runId"] in table

    for option in ("--since", "--until"):
        done = cli("runs", "list", option, "yesterday")
        assert done.returncode == 2, show(done)
        assert done.stdout == "" and len(done.stderr.splitlines()) == 1, show(done)
        assert done.stderr.startswith(f"error: {option}: 'yesterday' is not a time: use a relative time"), (
            show(done)
        )
