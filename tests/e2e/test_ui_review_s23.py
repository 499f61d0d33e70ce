"""Fixes from a review of the settings, run, DAG, audit and timeline pages, in a real browser
against a real ``kiok standalone``: "New policy" never replaces a policy of the same name; a
retrying task shows its error and its retry time; the DAG page pages its runs (in the URL) and
shows a re-run run's whole duration, marked; the audit log shows every record's detail; re-runs
ask to confirm, "Re-run from here" is not offered where the re-run would skip the task at once
and "Re-run failed" is not called that when nothing failed; inline confirms take the focus and
close on Escape, the password reset is a form; the forced password change focuses its first
field; the timeline's axis spans the bars drawn, and on a phone its names stay put while the
plot scrolls."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import Standalone
from tests.e2e.test_ui_audit import log_in, new_page

PW = "Review-S23-Pw-123"
PHONE = {"width": 390, "height": 844}
FLAKY = """
dag: {id: flaky}
tasks:
  - {id: wobbly, retries: 2, retry_delay: 10m, script: 'echo wobble; exit 3'}
"""
#: ``head`` fails: ``middle`` and ``tail`` are skipped, and only re-running ``head`` helps.
CHAIN = """
dag: {id: chain}
tasks:
  - {id: head, script: 'exit 1'}
  - {id: middle, requires: [head], script: 'true'}
  - {id: tail, requires: [middle], script: 'true'}
  - {id: cleanup, requires: [head], trigger_rule: all_done, script: 'true'}
"""
SLOW = """
dag: {id: slow}
tasks:
  - {id: nap, script: 'sleep 60'}
"""
STEPS = """
dag: {id: steps}
tasks:
  - {id: one, script: 'sleep 1'}
  - {id: two, requires: [one], script: 'sleep 1'}
"""
QUICK = """
dag: {id: quick}
tasks:
  - {id: t, script: 'true'}
"""


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-review-s23") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
    node.start()
    for dag in (FLAKY, CHAIN, SLOW, STEPS, QUICK):
        node.register(dag)
    yield node
    node.stop()


def policies(kiok: Standalone) -> dict[str, Any]:
    return {p["policy"]: p["document"] for p in kiok.api("GET", "/api/v1/iam/policies").json()["policies"]}


def test_new_policy_never_replaces_one_of_the_same_name(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    before = policies(kiok)["full-access"]
    context, page, console = new_page(browser)
    log_in(page, kiok, "/settings/policies")
    editor = page.get_by_test_id("policy-editor")
    expect(editor.get_by_role("heading")).to_have_text("New policy")
    # A name in the list: refused at the name field, nothing sent.
    editor.get_by_label("Policy name").fill("full-access")
    editor.get_by_role("button", name="Save policy").click()
    error = editor.get_by_test_id("policy-name-error")
    expect(error).to_contain_text("A policy named full-access already exists")
    expect(editor.get_by_label("Policy name")).to_be_focused()
    expect(editor.get_by_label("Policy name")).to_have_attribute("aria-invalid", "true")
    page.screenshot(path=str(shots / "s23-policy-name-taken.png"))
    assert policies(kiok)["full-access"] == before

    # One made elsewhere after the page loaded: the master refuses it (If-None-Match: *).
    doc = {"Statement": [{"Effect": "Allow", "Action": "dags:List", "Resource": "*"}]}
    assert kiok.api("POST", "/api/v1/iam/policies", json={"policy": "late", "document": doc}).is_success
    editor.get_by_label("Policy name").fill("late")
    expect(error).to_have_count(0)
    editor.get_by_role("button", name="Save policy").click()
    expect(error).to_contain_text("A policy named late already exists")
    assert [s["Action"] for s in policies(kiok)["late"]["Statement"]] == [["dags:List"]]

    # A new name is created, and the form then edits it.
    editor.get_by_label("Policy name").fill("fresh-one")
    editor.get_by_role("button", name="Save policy").click()
    expect(page.get_by_role("status")).to_have_text("Policy fresh-one saved.")
    expect(editor.get_by_role("heading")).to_have_text("Edit policy fresh-one")
    assert "fresh-one" in policies(kiok)
    page.screenshot(path=str(shots / "s23-policy-created.png"))
    context.close()
    console.take("409")
    assert console.errors == []


def test_a_retrying_task_shows_its_error_and_its_retry(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    run_id = kiok.trigger("flaky")
    kiok.wait_for(lambda: kiok.run(run_id)["tasks"]["wobbly"]["state"] == "RETRYING", 30, "a retry")
    waiting = kiok.run(run_id)["tasks"]["wobbly"]["waiting"]
    assert waiting.startswith("retry")
    context, page, console = new_page(browser)
    log_in(page, kiok, f"/runs/{run_id}")
    row = page.locator("tr[data-task=wobbly]")
    expect(row.locator(".err-text")).to_have_text("exit code 3")
    expect(row.get_by_test_id("task-waiting")).to_contain_text("retry (attempt 2) at ")
    page.screenshot(path=str(shots / "s23-retrying.png"))
    kiok.api("POST", f"/api/v1/runs/{run_id}/cancel")
    context.close()
    assert console.errors == []


def test_dag_page_pages_its_runs_and_marks_re_runs(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    ids = []
    for _ in range(5):
        ids.append(kiok.trigger("quick"))
        kiok.wait_run(ids[-1], timeout_s=60)
    # The oldest run is re-run a while after it ended: its whole span is more than that wait.
    time.sleep(2.5)
    assert kiok.api("POST", f"/api/v1/runs/{ids[0]}/rerun", json={"onlyFailed": False}).is_success
    kiok.wait_run(ids[0], timeout_s=60)

    context, page, console = new_page(browser)
    log_in(page, kiok, "/dags/quick?limit=2")
    table = page.locator("table.grid-table")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table).to_contain_text(ids[4])
    pager = page.get_by_test_id("runs-pager")
    expect(pager.get_by_role("button", name="← Newer runs")).to_be_disabled()
    pager.get_by_role("button", name="Older runs →").click()
    expect(table).to_contain_text(ids[2])
    expect(page).to_have_url(re.compile(r"/dags/quick\?limit=2&page=\d+$"))
    pager.get_by_role("button", name="Older runs →").click()
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table).to_contain_text(ids[0])
    expect(page.get_by_test_id("runs-page")).to_have_text("(page 3)")
    # A reload keeps the page; Back goes to the one before.
    page.reload()
    expect(table).to_contain_text(ids[0])
    expect(pager.get_by_role("button", name="Older runs →")).to_be_disabled()
    row = table.locator("tbody tr").filter(has_text=ids[0])
    expect(row.get_by_test_id("rerun-mark")).to_have_text("↻ re-run")
    cell = row.get_by_test_id("run-duration")
    seconds = float(re.findall(r"([\d.]+) s", cell.inner_text())[0])
    assert seconds >= 2.5, cell.inner_text()
    assert "the last re-run" in (cell.get_attribute("title") or "")
    page.screenshot(path=str(shots / "s23-dag-runs-page3.png"))
    page.go_back()
    expect(table).to_contain_text(ids[2])
    pager.get_by_role("button", name="← Newer runs").click()
    expect(table).to_contain_text(ids[4])
    expect(page).to_have_url(kiok.url + "/dags/quick?limit=2")
    context.close()
    assert console.errors == []


def test_audit_log_shows_the_detail_of_every_record(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    assert kiok.api("POST", "/api/v1/dags/quick/pause").is_success
    assert kiok.api("POST", "/api/v1/dags/quick/unpause").is_success
    context, page, console = new_page(browser)
    log_in(page, kiok, "/settings/audit?action=dags%3APause")
    rows = page.get_by_test_id("audit").locator("tbody tr")
    expect(rows.filter(has_text="unpaused")).to_have_count(1)
    expect(rows.get_by_test_id("audit-detail").filter(has_text=re.compile("^paused$"))).to_have_count(1)
    page.screenshot(path=str(shots / "s23-audit-detail.png"))
    context.close()
    assert console.errors == []


def test_re_runs_ask_first_and_are_offered_where_useful(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    run_id = kiok.trigger("chain")
    assert kiok.wait_run(run_id, timeout_s=60)["state"] == "FAILED"
    context, page, console = new_page(browser)
    log_in(page, kiok, f"/runs/{run_id}")
    expect(page.locator("tr[data-task=middle]")).to_contain_text("SKIPPED")
    # From head (no upstream) and cleanup (all_done): yes. From middle or tail: head failed or
    # middle was skipped, neither re-run, so they would be skipped again at once.
    expect(page.get_by_role("button", name="Re-run from head")).to_be_visible()
    expect(page.get_by_role("button", name="Re-run from cleanup")).to_be_visible()
    for task, upstream in (("middle", "head failed"), ("tail", "middle skipped")):
        row = page.locator(f"tr[data-task={task}]")
        expect(row.get_by_role("button", name=f"Re-run from {task}")).to_have_count(0)
        expect(row.get_by_test_id("no-rerun")).to_have_text(f"blocked: {upstream}")

    # Re-run failed asks first; Escape keeps the run as it is and gives the focus back.
    rerun = page.get_by_role("button", name="Re-run failed")
    rerun.click()
    confirm = page.get_by_role("group", name="Confirm re-run")
    expect(confirm).to_contain_text("Re-run the 3 tasks that did not succeed (1 failed, 2 skipped)")
    expect(confirm.get_by_role("button", name="Yes, re-run")).to_be_focused()
    page.screenshot(path=str(shots / "s23-rerun-confirm.png"))
    page.keyboard.press("Escape")
    expect(confirm).to_have_count(0)
    expect(rerun).to_be_focused()
    # Re-run from head asks too; Keep as is does nothing.
    page.get_by_role("button", name="Re-run from head").click()
    row_confirm = page.get_by_role("group", name="Confirm re-run from head")
    expect(row_confirm).to_contain_text("Re-run head and everything downstream of it?")
    row_confirm.get_by_role("button", name="Keep as is").click()
    expect(row_confirm).to_have_count(0)
    assert kiok.run(run_id).get("reruns", 0) in (0, None)
    # Confirmed, it re-runs.
    rerun.click()
    page.get_by_role("button", name="Yes, re-run").click()
    kiok.wait_for(lambda: (kiok.run(run_id).get("reruns") or 0) == 1, 30, "the re-run")
    context.close()
    assert console.errors == []

    # A run with only a cancelled task: not "Re-run failed".
    slow = kiok.trigger("slow")
    kiok.wait_for(lambda: kiok.run(slow)["tasks"].get("nap", {}).get("state") == "RUNNING", 30, "the nap")
    context, page, console = new_page(browser)
    log_in(page, kiok, f"/runs/{slow}")
    # Cancel run: the confirm takes the focus, Escape closes it, the focus goes back.
    cancel = page.get_by_role("button", name="Cancel run")
    cancel.click()
    expect(page.get_by_role("button", name="Yes, cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("group", name="Confirm cancel")).to_have_count(0)
    expect(cancel).to_be_focused()
    assert kiok.run(slow)["state"] == "RUNNING"
    cancel.click()
    expect(page.get_by_role("button", name="Yes, cancel")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("run-state")).to_contain_text("CANCELLED")
    expect(page.get_by_role("button", name="Re-run cancelled")).to_be_visible()
    expect(page.get_by_role("button", name="Re-run failed")).to_have_count(0)
    page.screenshot(path=str(shots / "s23-rerun-cancelled.png"))
    context.close()
    assert console.errors == []


def test_confirms_and_the_reset_form_by_keyboard(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    body = {"user": "dora", "password": PW, "policies": []}
    assert kiok.api("POST", "/api/v1/iam/users", json=body).status_code == 201
    context, page, console = new_page(browser)
    log_in(page, kiok, "/cluster")
    enter = page.get_by_role("button", name="Enter maintenance")
    enter.click()
    expect(page.get_by_role("button", name="Yes, enter")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("group", name="Confirm: Enter maintenance")).to_have_count(0)
    expect(enter).to_be_focused()
    assert kiok.api("GET", "/api/v1/admin/maintenance").json()["enabled"] is False

    page.goto(kiok.url + "/settings/users")
    row = page.locator("tr[data-user=dora]")
    delete = row.get_by_role("button", name="Delete user dora")
    delete.click()
    expect(row.get_by_role("button", name="Yes, delete")).to_be_focused()
    page.keyboard.press("Escape")
    expect(row.get_by_role("group", name="Delete dora")).to_have_count(0)
    expect(delete).to_be_focused()

    # Reset password: a form with its field focused and a placeholder; Enter saves it.
    reset = row.get_by_role("button", name="Reset password")
    reset.click()
    field = row.get_by_label("New password for dora")
    expect(field).to_be_focused()
    expect(field).to_have_attribute("placeholder", "new password")
    assert row.locator("form[aria-label='password for dora']").count() == 1
    page.screenshot(path=str(shots / "s23-reset-form.png"))
    page.keyboard.press("Escape")
    expect(field).to_have_count(0)
    expect(reset).to_be_focused()
    reset.click()
    field.fill(PW + "-new")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Password of dora set.")
    context.close()
    assert console.errors == []

    # dora must choose a new one: the screen comes in-app after the login, focused on its field.
    context, page, console = new_page(browser)
    page.goto(kiok.url + "/login")
    page.get_by_label("User").fill("dora")
    page.get_by_label("Password").fill(PW + "-new")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    expect(page.get_by_label("Current password")).to_be_focused()
    context.close()
    assert console.errors == []


def test_timeline_after_a_re_run_and_on_a_phone(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    run_id = kiok.trigger("steps")
    kiok.wait_run(run_id, timeout_s=60)
    time.sleep(4)
    assert kiok.api("POST", f"/api/v1/runs/{run_id}/rerun", json={"onlyFailed": False}).is_success
    kiok.wait_run(run_id, timeout_s=60)

    context, page, console = new_page(browser)
    log_in(page, kiok, f"/runs/{run_id}?tab=timeline")
    timeline = page.get_by_test_id("timeline")
    expect(timeline.locator("a.bar")).to_have_count(2)
    # The bars (both of the re-run) span most of the plot, not its last few percent.
    svg = timeline.locator("svg.timeline").bounding_box()
    rects = [timeline.locator(f"a.bar[data-task={t}] rect").bounding_box() for t in ("one", "two")]
    assert svg is not None and all(rects)
    left = min(r["x"] for r in rects if r)
    right = max(r["x"] + r["width"] for r in rects if r)
    plot = svg["width"] - 200 - 16
    assert (right - left) / plot > 0.8, f"the bars take {(right - left) / plot:.0%} of the plot"
    expect(page.get_by_test_id("timeline-origin")).to_contain_text("was re-run")
    expect(page.get_by_test_id("timeline-scroll-hint")).to_have_count(0)
    page.screenshot(path=str(shots / "s23-timeline-rerun.png"))
    context.close()
    assert console.errors == []

    # A phone: a narrow name column, a hint, and the names stay at the left while the plot scrolls.
    context, page, console = new_page(browser, viewport=PHONE)
    log_in(page, kiok, f"/runs/{run_id}?tab=timeline")
    timeline = page.get_by_test_id("timeline")
    expect(page.get_by_test_id("timeline-scroll-hint")).to_be_visible()
    names = page.get_by_test_id("timeline-names")
    box = names.bounding_box()
    wrap = timeline.bounding_box()
    assert box is not None and wrap is not None and box["width"] <= 110
    svg = timeline.locator("svg.timeline").bounding_box()
    assert svg is not None and svg["width"] - box["width"] - 16 >= 300, "the plot is too narrow"
    timeline.evaluate("(el) => { el.scrollLeft = 200; }")
    page.wait_for_timeout(100)
    moved = names.bounding_box()
    assert moved is not None and abs(moved["x"] - box["x"]) < 2, (box, moved)
    expect(names.locator("text").first).to_have_text("one")
    page.screenshot(path=str(shots / "s23-timeline-phone.png"))
    context.close()
    assert console.errors == []
