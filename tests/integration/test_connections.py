"""Connections and secrets: values go in and never come out of the API; tasks get them
resolved just before they run; anything a task prints of them is masked in its log."""

from __future__ import annotations

import os
from pathlib import Path

from kiok.testing.process import Standalone

SECRET = "s3cr3t-TOKEN-value-42"
PASSWORD = "db-pass-word-77"


def test_connections_are_resolved_masked_and_never_returned(shared_kiok: Standalone) -> None:
    k = shared_kiok
    r = k.api(
        "POST",
        "/api/v1/connections",
        json={
            "connectionId": "api",
            "type": "secret",
            "description": "the API",
            "properties": {"value": SECRET},
        },
    )
    assert r.status_code == 201 and SECRET not in r.text
    assert r.json()["properties"] == {"value": "***"}
    k.api(
        "POST",
        "/api/v1/connections",
        json={"connectionId": "db", "properties": {"password": PASSWORD, "user": "u"}},
    )
    listed = k.api("GET", "/api/v1/connections")
    assert {c["connectionId"] for c in listed.json()["connections"]} >= {"api", "db"}
    assert SECRET not in listed.text and PASSWORD not in listed.text
    assert k.api("GET", "/api/v1/connections/db").json()["properties"] == {"password": "***", "user": "***"}
    assert (
        k.api("POST", "/api/v1/connections", json={"connectionId": "a.b", "properties": {}}).status_code
        == 400
    )

    k.register(
        """
dag: {id: uses_secrets}
tasks:
  - id: show
    script: 'echo "token=${secret.api} pw=${conn.db.password}"; test -n "${conn.db.user}"'
  - id: split
    type: python
    script: |
      import sys
      v = "${secret.api}"
      sys.stdout.write(v[:5]); sys.stdout.flush(); print(v[5:]); raise SystemExit("bad " + v)
  - {id: missing, script: 'echo ${conn.nope.key}'}
"""
    )
    run_id = k.trigger("uses_secrets")
    run = k.wait_run(run_id)
    assert run["tasks"]["show"]["state"] == "SUCCESS"
    assert k.log(run_id, "show") == "token=*** pw=***\n"
    split_log = k.log(run_id, "split")
    assert SECRET not in split_log and "***" in split_log  # written in two pieces, still masked
    assert run["tasks"]["split"]["state"] == "FAILED"
    assert SECRET not in (run["tasks"]["split"]["error"] or "")
    assert run["tasks"]["missing"]["state"] == "FAILED" and "nope" in run["tasks"]["missing"]["error"]
    everything = k.api("GET", f"/api/v1/runs/{run_id}").text + k.log(run_id, "__run__")
    assert SECRET not in everything and PASSWORD not in everything

    assert k.api("DELETE", "/api/v1/connections/db").status_code == 200
    assert k.api("GET", "/api/v1/connections/db").status_code == 404
    assert k.api("DELETE", "/api/v1/connections/db").status_code == 404


def test_secrets_are_not_in_plaintext_on_disk(standalone_factory: object) -> None:
    k: Standalone = standalone_factory(env={"KIOK_MASTER_KEY": "x" * 40})  # type: ignore[operator]
    k.api("POST", "/api/v1/connections", json={"connectionId": "api", "properties": {"value": SECRET}})
    k.register("dag: {id: s}\ntasks: [{id: t, script: 'echo ${secret.api}'}]\n")
    k.wait_run(k.trigger("s"))
    k.stop()
    for d, _, files in os.walk(k.data_dir):
        for f in files:
            assert SECRET.encode() not in (Path(d) / f).read_bytes(), f
    assert SECRET.encode() not in k.log_path.read_bytes()
