"""Reading a run by version on a real standalone: ``?since=`` returns exactly the tasks that
changed (and the downstream tasks whose wait reason follows from them), nothing when
nothing did, the whole run for an unknown version; a read right after a change shows it
(the cached view is never served stale); a bad ``since`` is a 4xx naming it; ``kiok runs
status --wait``, polling with ``since``, prints the same view as a full read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from kiok.testing.watch import CLIENTS, RunWatcher
from tests.integration.test_cli import cli_for

GATED = ("g1", "g2", "g3", "g4")


def dag(gates: Path) -> str:
    tasks = "".join(
        f"  - {{id: {t}, script: 'while [ ! -f {gates}/{t} ]; do sleep 0.05; done'}}\n" for t in GATED
    )
    last = "  - {id: last, requires: [g1, g2, g3, g4], script: 'true'}\n"
    return f"dag: {{id: since_read, params: {{note: none}}}}\ntasks:\n{tasks}{last}"


def since(node: Standalone, run_id: str, version: int | str) -> dict[str, Any]:
    r = node.api("GET", f"/api/v1/runs/{run_id}", params={"since": version})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def all_running(node: Standalone, run_id: str) -> dict[str, Any] | None:
    run = node.run(run_id)
    return run if all(run["tasks"][t]["state"] == "RUNNING" for t in GATED) else None


def test_since_returns_exactly_what_changed(shared_kiok: Standalone, task_tmp_path: Path) -> None:
    node = shared_kiok
    node.register(dag(task_tmp_path))
    run_id = node.trigger("since_read", {"note": "n" * 60_000})
    running = node.wait_for(lambda: all_running(node, run_id), 30, "the gated tasks to run")
    assert running["full"] is True and set(running["tasks"]) == {*GATED, "last"}
    assert running["args"] == {"note": "n" * 60_000}
    v1 = running["version"]

    unchanged = since(node, run_id, v1)
    assert unchanged["full"] is False and unchanged["tasks"] == {} and unchanged["version"] == v1
    assert unchanged["state"] == "RUNNING" and unchanged["since"] == v1  # the run's fields always
    # But the args, which never change (the re-probe of session 29: 256 KiB of args made
    # every poll of a run that had not changed 786 KB).
    assert "args" not in unchanged

    (task_tmp_path / "g2").touch()
    node.wait_for(lambda: node.run(run_id)["tasks"]["g2"]["state"] == "SUCCESS", 30, "g2 to end")
    changed = since(node, run_id, v1)
    # g2's record changed; 'last' only in what it waits for (its view follows g2's).
    assert changed["full"] is False and list(changed["tasks"]) == ["g2", "last"]
    assert changed["tasks"]["g2"]["state"] == "SUCCESS" and changed["version"] > v1
    assert changed["tasks"]["last"]["waiting"] == "waiting for upstream: g1, g3, g4"
    assert since(node, run_id, changed["version"])["tasks"] == {}

    whole = since(node, run_id, changed["version"] + 1000)  # a version the run never had
    assert whole["full"] is True and set(whole["tasks"]) == {*GATED, "last"}
    assert since(node, run_id, 0)["full"] is True
    assert whole == node.run(run_id)  # the full answer is the plain read

    r = node.api("POST", f"/api/v1/runs/{run_id}/cancel")  # a change, then at once a read
    assert r.status_code == 200, r.text
    after = node.run(run_id)
    assert after["cancelRequested"] is True and after["version"] > changed["version"]
    ended = node.wait_run(run_id)
    assert ended["state"] == "CANCELLED" and ended["tasks"]["g2"]["state"] == "SUCCESS"
    assert all(ended["tasks"][t]["state"] == "CANCELLED" for t in ("g1", "g3", "g4", "last"))


def test_a_bad_since_is_refused_by_name(shared_kiok: Standalone, task_tmp_path: Path) -> None:
    node = shared_kiok
    node.register(dag(task_tmp_path).replace("since_read", "since_bad"))
    run_id = node.trigger("since_bad")
    for bad in ("-1", "abc", str(2**60)):
        r = node.api("GET", f"/api/v1/runs/{run_id}", params={"since": bad})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input", (bad, r.text)
        assert "since" in r.json()["error"]["message"], r.text
    assert node.api("GET", "/api/v1/runs/nope-1-1", params={"since": 1}).status_code in (403, 404)
    node.api("POST", f"/api/v1/runs/{run_id}/cancel")


def test_cli_status_wait_follows_the_run_by_version(
    shared_kiok: Standalone, task_tmp_path: Path, tmp_path: Path
) -> None:
    node = shared_kiok
    node.register(dag(task_tmp_path).replace("since_read", "since_cli"))
    run_id = node.trigger("since_cli", {"note": "kept"})
    node.wait_for(lambda: all_running(node, run_id), 30, "the gated tasks to run")
    cli = cli_for(node, tmp_path / "config")
    cli.ok("login", "--user", "admin", "--password", ADMIN_PASSWORD)
    with cli.popen("--json", "runs", "status", run_id, "--wait", "--interval", "0.1") as proc:
        for gate in GATED:  # the run changes under the polling command, a task at a time
            (task_tmp_path / gate).touch()
            node.wait_for(lambda g=gate: node.run(run_id)["tasks"][g]["state"] == "SUCCESS", 30, gate)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out) == node.run(run_id)  # patched version by version, equal to a full read


@pytest.mark.parametrize("client", CLIENTS)
def test_the_benches_watching_client_holds_what_a_full_read_shows(
    shared_kiok: Standalone, task_tmp_path: Path, client: str
) -> None:
    """``kiok.testing.watch`` (what ``bench/`` polls runs with) patches its copy by version:
    after each change, and at the end, it holds exactly what a full read shows."""
    node = shared_kiok
    name = f"since_watch_{client}"
    node.register(dag(task_tmp_path / client).replace("since_read", name))
    (task_tmp_path / client).mkdir()
    run_id = node.trigger(name, {"note": "kept"})
    watcher = RunWatcher(node, client)
    try:
        node.wait_for(lambda: all_running(node, run_id), 30, "the gated tasks to run")
        assert watcher.read(run_id)["full"] is True
        for gate in GATED[:-1]:  # the run stays still after each (the last gate starts 'last')
            (task_tmp_path / client / gate).touch()
            node.wait_for(lambda g=gate: node.run(run_id)["tasks"][g]["state"] == "SUCCESS", 30, gate)
            held = watcher.read(run_id)
            assert held["full"] is False and held["tasks"] == node.run(run_id)["tasks"]
        (task_tmp_path / client / GATED[-1]).touch()
        node.wait_run(run_id)
        held = watcher.read(run_id)
        whole = node.run(run_id)
        assert held["tasks"] == whole["tasks"] and held["state"] == whole["state"] == "SUCCESS"
    finally:
        watcher.close()
