"""Actions offered as the user's policies allow them on each DAG and run, in a real browser
against a real ``kiok standalone``. ``alice`` may read every DAG and run, but trigger, pause,
cancel, re-run and read the logs of ``params_all`` only: the DAG list and the DAG page offer
▶ Run and the pause switch on ``params_all`` alone (disabled on the others, saying why), and a
run of another DAG offers no Cancel, Re-run nor log link (its task names are plain text, its
graph nodes and timeline bars lead nowhere). Before, ``/me`` answered "allowed on some
resource", so every DAG had a working-looking ▶ Run that only Start run refused, and every
log link led to a page with a 403 alone. An admin keeps every action."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.e2e.test_ui_run_access import open_page, wait_until

PW = "Permissions-S23-Pw-123"
MINE = "params_all"
OTHER = "nightly_report"
DAG = """
dag: {{id: {id}, params: {{hold: {{type: integer, default: 0}}}}}}
tasks:
  - {{id: extract, script: 'sleep ${{params.hold}}; echo extracted'}}
  - {{id: load, requires: [extract], script: 'echo loading; exit 3'}}
"""
READ = ["dags:List", "dags:Read", "runs:List", "runs:Read"]
POLICY = {
    "Statement": [
        {"Effect": "Allow", "Action": READ, "Resource": "*"},
        {"Effect": "Allow", "Action": ["dags:Trigger", "dags:Pause"], "Resource": f"dag/{MINE}"},
        {
            "Effect": "Allow",
            "Action": ["logs:Read", "runs:Cancel", "runs:Rerun"],
            "Resource": f"dag/{MINE}/run/*",
        },
    ]
}


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-permissions") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
    node.start()
    for dag in (MINE, OTHER):
        node.register(DAG.format(id=dag))
    r = node.api("POST", "/api/v1/iam/policies", json={"policy": "alice-params", "document": POLICY})
    assert r.status_code == 201, r.text
    r = node.api(
        "POST", "/api/v1/iam/users", json={"user": "alice", "password": PW, "policies": ["alice-params"]}
    )
    assert r.status_code == 201, r.text
    yield node
    node.stop()


def runs(kiok: Standalone) -> dict[str, dict[str, str]]:
    """For each DAG a failed run and a running one (holding for 10 minutes)."""
    out: dict[str, dict[str, str]] = {}
    for dag in (MINE, OTHER):
        failed = kiok.trigger(dag)
        assert kiok.wait_run(failed, timeout_s=60)["state"] == "FAILED"
        going = kiok.trigger(dag, {"hold": 600})
        kiok.wait_for(lambda g=going: kiok.run(g)["state"] == "RUNNING", 60, "a holding run to start")
        out[dag] = {"failed": failed, "going": going}
    return out


def test_actions_follow_the_policy_per_dag_and_per_run(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    made = runs(kiok)
    try:
        context, page, console, _ = open_page(browser, kiok, "alice", PW, "/")
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/api/v1/me?" in r.url else None)
        page.goto(kiok.url + "/dags")

        # The DAG list: Run and pause on her DAG only; on the other, disabled, saying why.
        mine, other = page.locator(f"tr[data-dag={MINE}]"), page.locator(f"tr[data-dag={OTHER}]")
        expect(mine.get_by_role("button", name=f"Run {MINE}")).to_be_enabled()
        run_other = other.get_by_role("button", name=f"Run {OTHER}")
        expect(run_other).to_be_disabled()
        expect(run_other).to_have_attribute(
            "title", re.compile(r"do not allow running this DAG \(dags:Trigger\)")
        )
        expect(mine.get_by_role("switch")).to_be_enabled()
        expect(other.get_by_role("switch")).to_be_disabled()
        expect(other.locator("label.switch")).to_have_attribute("title", re.compile(r"dags:Pause"))
        page.screenshot(path=str(shots / "s23-permissions-dags.png"))
        # One /me request for the page's DAGs, both in it.
        assert len(asked) == 1, asked
        assert f"dag={MINE}" in asked[0] and f"dag={OTHER}" in asked[0], asked

        # The DAG pages.
        page.goto(kiok.url + f"/dags/{OTHER}")
        expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        expect(page.get_by_role("button", name="▶ Run")).to_be_disabled()
        expect(page.get_by_role("button", name="▶ Run")).to_have_attribute(
            "title", re.compile("dags:Trigger")
        )
        expect(page.get_by_role("switch")).to_be_disabled()
        page.screenshot(path=str(shots / "s23-permissions-dag-other.png"))
        page.goto(kiok.url + f"/dags/{MINE}")
        expect(page.get_by_role("button", name="▶ Run")).to_be_enabled()
        expect(page.get_by_role("switch")).to_be_enabled()

        # A finished run of the other DAG: readable, nothing else. No log link anywhere.
        page.goto(kiok.url + f"/runs/{made[OTHER]['failed']}")
        expect(page.get_by_test_id("run-state")).to_contain_text("FAILED")
        expect(page.get_by_test_id("graph").locator("g.node")).to_have_count(2)
        expect(page.get_by_test_id("task-name")).to_have_count(2)
        expect(page.get_by_role("link", name="Run log")).to_have_count(0)
        expect(page.locator("table.jobs a")).to_have_count(0)
        expect(page.locator("svg.graph a.node")).to_have_count(0)
        expect(page.get_by_role("button", name=re.compile("^Re-run"))).to_have_count(0)
        page.screenshot(path=str(shots / "s23-permissions-run-other.png"))
        page.get_by_role("tab", name="Timeline").click()
        expect(page.get_by_test_id("timeline").locator("a.bar")).to_have_count(2)
        expect(page.get_by_test_id("timeline").locator("a[href]")).to_have_count(0)
        # Running: no Cancel.
        page.goto(kiok.url + f"/runs/{made[OTHER]['going']}")
        expect(page.get_by_test_id("run-state")).to_contain_text("RUNNING")
        expect(page.get_by_test_id("task-name")).to_have_count(2)
        expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)

        # Her DAG's runs: every action and link.
        page.goto(kiok.url + f"/runs/{made[MINE]['failed']}")
        expect(page.get_by_role("link", name="Run log")).to_be_visible()
        expect(page.get_by_role("button", name="Re-run failed")).to_be_visible()
        expect(page.locator("table.jobs tr[data-task=load] a")).to_have_text("load")
        expect(page.locator("svg.graph a.node")).to_have_count(2)
        page.screenshot(path=str(shots / "s23-permissions-run-mine.png"))
        page.locator("svg.graph a.node[data-task=load]").click()
        expect(page.get_by_test_id("log-status")).to_contain_text("Complete")
        page.goto(kiok.url + f"/runs/{made[MINE]['going']}")
        expect(page.get_by_role("button", name="Cancel run")).to_be_visible()
        context.close()
        assert console.errors == []

        # An admin: every action on both DAGs, as before.
        context, page, console, _ = open_page(browser, kiok, "admin", ADMIN_PASSWORD, "/dags")
        for dag in (MINE, OTHER):
            row = page.locator(f"tr[data-dag={dag}]")
            expect(row.get_by_role("button", name=f"Run {dag}")).to_be_enabled()
            expect(row.get_by_role("switch")).to_be_enabled()
        page.goto(kiok.url + f"/runs/{made[OTHER]['failed']}")
        expect(page.get_by_role("link", name="Run log")).to_be_visible()
        expect(page.get_by_role("button", name="Re-run failed")).to_be_visible()
        expect(page.locator("svg.graph a.node")).to_have_count(2)
        expect(page.locator("table.jobs a")).to_have_count(2)
        page.goto(kiok.url + f"/runs/{made[OTHER]['going']}")
        expect(page.get_by_role("button", name="Cancel run")).to_be_visible()
        context.close()
        assert console.errors == []
    finally:
        for dag_runs in made.values():
            kiok.api("POST", f"/api/v1/runs/{dag_runs['going']}/cancel")


def test_signing_in_as_another_user_asks_again(kiok: Standalone, browser: Any) -> None:
    """The answers are the signed-in user's: after alice logs out and the admin logs in on the
    same page, the other DAG's Run is enabled (asked again, not alice's kept)."""
    from playwright.sync_api import expect

    context, page, console, _ = open_page(browser, kiok, "alice", PW, "/dags")
    run_other = page.locator(f"tr[data-dag={OTHER}]").get_by_role("button", name=f"Run {OTHER}")
    expect(run_other).to_be_disabled()
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("User").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("user")).to_have_text("admin")
    page.get_by_role("navigation").get_by_role("link", name="DAGs").click()  # no reload
    expect(run_other).to_be_enabled()
    wait_until(page, lambda: run_other.get_attribute("title") is None, "the admin's answer")
    context.close()
    assert console.errors == []
