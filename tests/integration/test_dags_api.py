"""Registering, listing, pausing, deleting and triggering DAGs over HTTP; bad input refused
with a 4xx whose message names the problem, and never half-applied."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from kiok.testing.process import Standalone

GOOD = """dag: {id: good, params: {x: '1'}}
tasks:
  - {id: a, script: 'echo a'}
  - {id: b, requires: [a], script: 'echo b'}
"""


def post_yaml(kiok: Standalone, text: str) -> httpx.Response:
    return kiok.api("POST", "/api/v1/dags", content=text, headers={"Content-Type": "application/yaml"})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "dag: {id: cyc}\ntasks:\n  - {id: a, requires: [c], script: x}\n"
            "  - {id: b, requires: [a], script: x}\n  - {id: c, requires: [b], script: x}\n",
            "a -> b -> c -> a",
        ),
        ("dag: {id: dang}\ntasks:\n  - {id: a, requires: [ghost], script: x}\n", "ghost"),
        ("dag: {id: dup}\ntasks:\n  - {id: a, script: x}\n  - {id: a, script: y}\n", "duplicate"),
        ("dag: {id: cron, schedule: '61 * * * *'}\ntasks:\n  - {id: a, script: x}\n", "cron"),
        (
            "dag: {id: tz, schedule: '0 * * * *', timezone: Mars/Olympus}\ntasks:\n  - {id: a, script: x}\n",
            "Mars/Olympus",
        ),
        (  # a long path made ZoneInfo recurse through nested imports: a 500
            "dag: {id: tzdeep, schedule: '0 * * * *', timezone: " + "A/" * 300 + "B}\n"
            "tasks:\n  - {id: a, script: x}\n",
            "dag.timezone",
        ),
        ("dag: {id: noscript}\ntasks:\n  - {id: a, type: shell}\n", "script"),
        ("dag: {id: nourl}\ntasks:\n  - {id: a, type: http}\n", "url"),
        ("dag: {id: typ}\ntasks:\n  - {id: a, type: spark, script: x}\n", "spark"),
        ("dag: {id: yamlbad}\ntasks:\n  - {id: a, script: [unclosed\n", "line"),
        ("dag: {id: typo}\ntasks:\n  - {id: a, script: x, requirs: [b]}\n", "requirs"),
    ],
)
def test_invalid_dags_are_refused_naming_the_problem(
    shared_kiok: Standalone, body: str, expected: str
) -> None:
    r = post_yaml(shared_kiok, body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_dag"
    assert expected in err["message"]


def test_register_json_list_get_and_failed_update_keeps_previous(shared_kiok: Standalone) -> None:
    doc = {
        "dag": {"id": "jdag", "schedule": "0 2 * * *", "timezone": "Europe/Berlin"},
        "tasks": [{"id": "t", "script": "true"}],
    }
    r = shared_kiok.api(
        "POST", "/api/v1/dags", content=json.dumps(doc), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 201 and r.json()["registered"] == "jdag"
    listed = {d["dagId"]: d for d in shared_kiok.api("GET", "/api/v1/dags").json()["dags"]}
    assert listed["jdag"]["schedule"] == "0 2 * * *" and listed["jdag"]["timezone"] == "Europe/Berlin"
    bad = {"dag": {"id": "jdag"}, "tasks": [{"id": "t", "requires": ["t"], "script": "true"}]}
    refused = shared_kiok.api(
        "POST", "/api/v1/dags", content=json.dumps(bad), headers={"Content-Type": "application/json"}
    )
    assert refused.status_code == 400
    kept = shared_kiok.api("GET", "/api/v1/dags/jdag").json()
    assert kept["version"] == 1 and kept["spec"]["dag"]["schedule"] == "0 2 * * *"


def test_pause_delete_and_trigger_errors(shared_kiok: Standalone) -> None:
    shared_kiok.register(GOOD)
    assert shared_kiok.api("POST", "/api/v1/dags/good/pause").json()["paused"] is True
    paused = shared_kiok.api("POST", "/api/v1/dags/good/runs", json={"args": {}})
    assert paused.status_code == 409 and paused.json()["error"]["code"] == "dag_paused"
    assert "paused" in paused.json()["error"]["message"]
    shared_kiok.api("POST", "/api/v1/dags/good/unpause")
    run_id = shared_kiok.trigger("good")
    shared_kiok.wait_run(run_id)
    assert shared_kiok.api("DELETE", "/api/v1/dags/good").status_code == 200
    assert shared_kiok.api("GET", "/api/v1/dags/good").status_code == 404
    gone = shared_kiok.api("POST", "/api/v1/dags/good/runs", json={})
    assert gone.status_code == 404 and "deleted" in gone.json()["error"]["message"]
    assert shared_kiok.run(run_id)["state"] == "SUCCESS"  # history outlives the DAG
    assert shared_kiok.api("GET", "/api/v1/runs/nope-1-1").status_code == 404
    assert shared_kiok.api("GET", "/api/v1/no/such/route").json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("content", "ctype"),
    [("{not json", "application/json"), ('{"args": [1, 2]}', "application/json")],
)
def test_bad_trigger_bodies_get_400(shared_kiok: Standalone, content: str, ctype: str) -> None:
    shared_kiok.register(GOOD.replace("id: good", "id: good2"))
    r = shared_kiok.api("POST", "/api/v1/dags/good2/runs", content=content, headers={"Content-Type": ctype})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input"


def test_runs_are_listed_newest_first_with_cursor_pagination(shared_kiok: Standalone) -> None:
    shared_kiok.register(GOOD.replace("id: good", "id: paged"))
    ids = [shared_kiok.trigger("paged") for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"dag": "paged", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = shared_kiok.api("GET", "/api/v1/runs", params=params).json()
        seen += [r["runId"] for r in page["runs"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert shared_kiok.api("GET", "/api/v1/runs", params={"state": "BOGUS"}).status_code == 400


def test_oversized_body_gets_413(standalone_factory: Any) -> None:
    kiok: Standalone = standalone_factory(env={"KIOK_ADMIN_HTTP_MAX_CONTENT_SIZE_BYTES": "2000"})
    big = GOOD + "#" + "x" * 3000 + "\n"
    r = post_yaml(kiok, big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Any:  # no Content-Length: the limit still holds
        for _ in range(10):
            yield b"#" + b"y" * 500 + b"\n"

    r = kiok.api("POST", "/api/v1/dags", content=chunks(), headers={"Content-Type": "application/yaml"})
    assert r.status_code == 413
    assert post_yaml(kiok, GOOD).status_code == 201  # and the server is fine afterwards
