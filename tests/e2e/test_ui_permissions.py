"""What a user is offered as its policies allow, in a real browser against a real ``kiok
standalone``. ``alice`` may read every DAG and run, but trigger, pause, cancel, re-run and read
the logs of ``params_all`` only: the DAG list and the DAG page offer ▶ Run and the pause switch
on ``params_all`` alone (disabled on the others, saying why), and a run of another DAG offers no
Cancel, Re-run nor log link (its task names are plain text, its graph nodes and timeline bars
lead nowhere); an admin keeps every action, and signing in as another user asks again. The
grid's cells link only to the logs the user may read (one ``/me`` request for the page's runs),
and another user's access keys are offered (to delete, or to make one for them) only to a user
who may."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.e2e.test_ui_audit import log_in, new_page
from tests.e2e.test_ui_run_access import open_page, wait_until

PW = "Permissions-Pw-123"
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
QUICK = """
dag: {id: quick}
tasks:
  - {id: t, script: 'true'}
"""


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-permissions") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
    node.start()
    for dag in (MINE, OTHER):
        node.register(DAG.format(id=dag))
    node.register(QUICK)
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


# Before, ``/me`` answered "allowed on some resource", so every DAG had a working-looking ▶ Run
# that only Start run refused, and every log link led to a page with a 403 alone.
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


def test_grid_cells_link_to_logs_only_where_they_may_be_read(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    readable, unreadable = kiok.trigger("quick"), kiok.trigger("quick")
    for run_id in (readable, unreadable):
        kiok.wait_run(run_id, timeout_s=60)
    read = ["dags:List", "dags:Read", "runs:List", "runs:Read"]
    doc = {
        "Statement": [
            {"Effect": "Allow", "Action": read, "Resource": "*"},
            {"Effect": "Allow", "Action": "logs:Read", "Resource": f"dag/quick/run/{readable}"},
        ]
    }
    policy = {"policy": "grid-reader", "document": doc}
    assert kiok.api("POST", "/api/v1/iam/policies", json=policy).is_success
    user = {"user": "gridder", "password": PW, "policies": ["grid-reader"]}
    assert kiok.api("POST", "/api/v1/iam/users", json=user).is_success

    context, page, console, _ = open_page(browser, kiok, "gridder", PW, "/")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/api/v1/me?" in r.url else None)
    page.goto(kiok.url + "/dags/quick/grid")
    row = page.get_by_test_id("grid").locator(".grow[data-task=t]")
    ok = row.locator("a.gc").nth(1)  # newest first: the unreadable run, then the readable one
    no = row.locator("a.gc").nth(0)
    expect(ok).to_have_attribute("href", f"/runs/{readable}/tasks/t")
    expect(ok).to_have_attribute("aria-label", f"t, run {readable}: SUCCESS")
    expect(no).to_have_attribute("aria-label", f"t, run {unreadable}: SUCCESS, no log")
    assert no.get_attribute("href") is None
    no.hover()
    expect(no).to_have_attribute("title", re.compile(r"run .* · no log: .*\(logs:Read\)$"))
    # One /me request for the page's runs.
    assert len([u for u in asked if "run=" in u]) == 1, asked
    assert f"run={readable}" in asked[0] and f"run={unreadable}" in asked[0], asked
    page.mouse.move(0, 0)
    page.screenshot(path=str(shots / "s23b-grid-no-logs.png"))

    # The keyboard: one tab stop, arrows move over both; Enter opens only the readable log.
    ok.focus()
    page.keyboard.press("ArrowLeft")
    expect(no).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    expect(page).to_have_url(kiok.url + "/dags/quick/grid")
    page.keyboard.press("ArrowRight")
    expect(ok).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(kiok.url + f"/runs/{readable}/tasks/t")
    context.close()
    assert console.errors == []


def test_another_users_access_keys_are_offered_only_where_allowed(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    """Before: a user who may read IAM and list keys was offered to make keys for anyone and
    to delete anyone's, each refused with a 403 after the click."""
    from playwright.sync_api import expect

    looks = {
        "Statement": [{"Effect": "Allow", "Action": ["iam:Read", "iam:ListAccessKeys"], "Resource": "*"}]
    }
    assert kiok.api(
        "POST", "/api/v1/iam/policies", json={"policy": "s25-looks", "document": looks}
    ).is_success
    body = {"user": "looker", "password": PW, "policies": ["s25-looks"]}
    assert kiok.api("POST", "/api/v1/iam/users", json=body).status_code == 201
    body = {"user": "owner", "password": PW, "policies": []}
    assert kiok.api("POST", "/api/v1/iam/users", json=body).status_code == 201
    theirs = kiok.api("POST", "/api/v1/iam/access-keys", json={"user": "owner"})
    assert theirs.status_code == 201, theirs.text
    their_key = theirs.json()["accessKeyId"]
    me = kiok.api("GET", "/api/v1/me?user=owner&user=admin").json()["allowedOnUser"]
    assert me["owner"]["iam:DeleteAccessKey"] is True  # the admin may

    context, page, console = new_page(browser)
    log_in(page, kiok, "/settings/access-keys", user="looker", password=PW)
    rows = page.get_by_test_id("access-keys")
    expect(rows.locator(f"tr[data-key='{their_key}']")).to_be_visible()
    expect(rows.get_by_role("button", name=f"Delete access key {their_key}")).to_have_count(0)
    form = page.get_by_role("form", name="Create access key")
    expect(form.get_by_label("Your password")).to_be_visible()
    expect(form.get_by_label("For user")).to_have_count(0)  # itself only
    form.get_by_label("Your password").fill(PW)
    form.get_by_role("button", name="Create access key").click()
    mine = page.get_by_test_id("access-key-id")
    expect(mine).to_be_visible()
    expect(rows.get_by_role("button", name=f"Delete access key {mine.inner_text()}")).to_be_visible()
    page.screenshot(path=str(shots / "s25-access-keys-looker.png"))
    context.close()
    assert console.errors == []

    context, page, console = new_page(browser)
    log_in(page, kiok, "/settings/access-keys")
    expect(page.get_by_role("button", name=f"Delete access key {their_key}")).to_be_visible()
    expect(page.get_by_label("For user").locator("option", has_text="owner")).to_have_count(1)
    context.close()
    assert console.errors == []
