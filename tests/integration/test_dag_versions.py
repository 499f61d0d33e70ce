"""DAG versions against a real ``kiok standalone``: a run records the version it ran, an
unchanged spec does not bump the version, versions are listed with who/when/hash and readable
with their source, and only ``kiok.dag.versions.keep`` of them are kept."""

from __future__ import annotations

import hashlib

import pytest

from kiok.testing.process import Standalone

pytestmark = pytest.mark.slow


def _dag(echo: str, extra: str = "") -> str:
    return f"dag: {{id: versioned{extra}}}\ntasks:\n  - id: a\n    script: echo {echo}\n"


def test_versions_are_recorded_listed_and_bounded(standalone_factory: object) -> None:
    kiok: Standalone = standalone_factory(env={"KIOK_DAG_VERSIONS_KEEP": "2"})  # type: ignore[operator]
    headers = {"Content-Type": "application/yaml"}

    def register(text: str) -> dict[str, object]:
        r = kiok.api("POST", "/api/v1/dags", content=text, headers=headers)
        assert r.status_code == 201, r.text
        body: dict[str, object] = r.json()
        return body

    assert register(_dag("one"))["version"] == 1
    again = register(_dag("one"))
    assert (again["version"], again["changed"]) == (1, False)  # unchanged: no new version
    run1 = kiok.trigger("versioned")
    assert register(_dag("two"))["version"] == 2
    run2 = kiok.trigger("versioned")
    assert kiok.wait_run(run1)["dagVersion"] == 1
    assert kiok.wait_run(run2)["dagVersion"] == 2

    listed = kiok.api("GET", "/api/v1/dags/versioned/versions").json()["versions"]
    assert [v["version"] for v in listed] == [2, 1]
    assert listed[0]["by"] == "admin" and listed[0]["registeredAt"].endswith("Z")
    assert listed[1]["sourceHash"] == hashlib.sha256(_dag("one").encode()).hexdigest()
    one = kiok.api("GET", "/api/v1/dags/versioned/versions/1").json()
    assert one["source"] == _dag("one") and one["spec"]["tasks"][0]["script"] == "echo one"

    assert register(_dag("three"))["version"] == 3  # keep = 2: version 1 goes
    assert [v["version"] for v in kiok.api("GET", "/api/v1/dags/versioned/versions").json()["versions"]] == [
        3,
        2,
    ]
    r = kiok.api("GET", "/api/v1/dags/versioned/versions/1")
    assert r.status_code == 404 and "no version 1" in r.text, r.text
    assert kiok.api("GET", "/api/v1/dags/nosuch/versions").status_code == 404
    assert kiok.api("GET", "/api/v1/dags/versioned/versions/x").status_code in (400, 422)

    # Deleted and registered again: numbers go on, so a run's dagVersion never names two specs.
    assert kiok.api("DELETE", "/api/v1/dags/versioned").status_code == 200
    assert register(_dag("four"))["version"] == 4
