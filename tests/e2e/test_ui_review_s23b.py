"""Fixes from a second review of the UI, in a real browser against a real ``kiok standalone``:
a retrying task's retry time is shown as every other time (UTC or local, with how long until
it); the jobs table keeps ids whole and scrolls in its box on a phone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kiok.testing.process import Standalone
from tests.e2e.test_ui_audit import log_in, new_page
from tests.e2e.test_ui_run_access import open_page

PW = "Review-S23b-Pw-123"
PHONE = {"width": 390, "height": 844}
FLAKY = """
dag: {id: flaky}
tasks:
  - {id: wobbly, retries: 2, retry_delay: 10m, script: 'echo wobble; exit 3'}
"""
#: ``head`` fails: ``tail`` is skipped.
CHAIN = """
dag: {id: chain}
tasks:
  - {id: head, script: 'echo no; exit 1'}
  - {id: tail, requires: [head], script: 'true'}
"""
#: ``head`` fails after a while: the re-run's notice stays while it runs.
SLOW_CHAIN = """
dag: {id: slow_chain}
tasks:
  - {id: head, script: 'sleep 3; exit 1'}
  - {id: tail, requires: [head], script: 'true'}
"""
QUICK = """
dag: {id: quick}
tasks:
  - {id: t, script: 'true'}
"""


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-review-s23b") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
    node.start()
    for dag in (FLAKY, CHAIN, QUICK):
        node.register(dag)
    yield node
    node.stop()


@pytest.fixture(scope="module")
def retrying(kiok: Standalone) -> Iterator[str]:
    """A run whose one task waits ten minutes for its second attempt."""
    run_id = kiok.trigger("flaky")
    kiok.wait_for(lambda: kiok.run(run_id)["tasks"]["wobbly"]["state"] == "RETRYING", 30, "a retry")
    yield run_id
    kiok.api("POST", f"/api/v1/runs/{run_id}/cancel")


def test_a_retry_time_follows_the_time_zone_switch(
    kiok: Standalone, retrying: str, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    task = kiok.run(retrying)["tasks"]["wobbly"]
    at = datetime.fromisoformat(task["retryAt"].replace("Z", "+00:00")).astimezone(UTC)
    context, page, console = new_page(browser, timezone_id="Asia/Tokyo")
    log_in(page, kiok, f"/runs/{retrying}")
    waiting = page.locator("tr[data-task=wobbly]").get_by_test_id("task-waiting")
    utc = at.strftime("%Y-%m-%d %H:%M:%S UTC")
    expect(waiting).to_have_text(re.compile(rf"^retry \(attempt 2\) at {utc} \(in (9|10) m \d\d s\)$"))
    page.screenshot(path=str(shots / "s23b-retry-utc.png"))
    page.get_by_role("group", name="Times shown in").get_by_role("button", name="Local").click()
    local = at.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M:%S")
    pattern = rf"^retry \(attempt 2\) at {local} (GMT\+9|JST) \(in (9|10) m \d\d s\)$"
    expect(waiting).to_have_text(re.compile(pattern))
    page.screenshot(path=str(shots / "s23b-retry-local.png"))
    context.close()
    assert console.errors == []


def one_line(locator: Any) -> bool:
    """Whether the element's text is on one line (not broken inside an id or a word)."""
    lines = locator.evaluate(
        "e => { const w = document.createTreeWalker(e, NodeFilter.SHOW_TEXT); const tops = new Set(); let n;"
        " while ((n = w.nextNode())) { const r = document.createRange(); r.selectNodeContents(n);"
        " for (const b of r.getClientRects()) if (b.width > 1) tops.add(Math.round(b.top)); }"
        " return tops.size; }"
    )
    return bool(lines == 1)


def test_jobs_table_keeps_ids_whole_and_scrolls_in_its_box(
    kiok: Standalone, retrying: str, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    context, page, console = new_page(browser, viewport=PHONE)
    log_in(page, kiok, f"/runs/{retrying}")
    row = page.locator("tr[data-task=wobbly]")
    expect(row.get_by_test_id("task-waiting")).to_be_visible()
    row.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "s23b-jobs-390.png"), full_page=True)
    worker = row.locator("td").nth(3)
    assert one_line(worker), worker.bounding_box()
    assert one_line(row.locator(".err-text")), row.locator(".err-text").bounding_box()
    why = row.locator("td").nth(7).bounding_box()
    assert why is not None and why["width"] >= 200, why
    table = page.locator("table.jobs")
    assert table.evaluate("t => t.scrollWidth > t.clientWidth + 50")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    table.evaluate("t => { t.scrollLeft = t.scrollWidth; }")
    table.screenshot(path=str(shots / "s23b-jobs-390-scrolled.png"))
    context.close()
    assert console.errors == []

    # At 1440, asking "Re-run from here" moves no column.
    run_id = kiok.trigger("chain")
    assert kiok.wait_run(run_id, timeout_s=60)["state"] == "FAILED"
    context, page, console = new_page(browser, viewport={"width": 1440, "height": 900})
    log_in(page, kiok, f"/runs/{run_id}")
    heads = page.locator("table.jobs thead th")
    expect(page.get_by_role("button", name="Re-run from head")).to_be_visible()
    worker = page.locator("tr[data-task=head] td").nth(3)
    assert one_line(worker), worker.bounding_box()
    before = [heads.nth(i).bounding_box() for i in range(heads.count())]
    page.get_by_role("button", name="Re-run from head").click()
    confirm = page.get_by_role("group", name="Confirm re-run from head")
    expect(confirm.get_by_role("button", name="Yes, re-run")).to_be_focused()
    page.screenshot(path=str(shots / "s23b-rerun-from-1440.png"))
    after = [heads.nth(i).bounding_box() for i in range(heads.count())]
    assert before == after
    page.keyboard.press("Escape")
    expect(confirm).to_have_count(0)
    expect(page.get_by_role("button", name="Re-run from head")).to_be_focused()
    # At 390, the table scrolled to that button: the confirm below it is in view.
    page.set_viewport_size(PHONE)
    page.get_by_role("button", name="Re-run from head").click()
    yes = confirm.get_by_role("button", name="Yes, re-run")
    expect(yes).to_be_focused()
    yes.scroll_into_view_if_needed()
    box = yes.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    page.screenshot(path=str(shots / "s23b-rerun-from-390.png"))
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


def test_focus_after_a_confirmed_action_stays_in_the_page(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    context, page, console = new_page(browser)
    # Enter maintenance, confirmed: the focus is on Leave maintenance, which replaced it.
    log_in(page, kiok, "/cluster")
    page.get_by_role("button", name="Enter maintenance").click()
    page.get_by_role("button", name="Yes, enter").press("Enter")
    leave = page.get_by_role("button", name="Leave maintenance")
    expect(leave).to_be_focused()
    leave.press("Enter")
    page.get_by_role("button", name="Yes, leave").press("Enter")
    expect(page.get_by_role("button", name="Enter maintenance")).to_be_focused()
    assert kiok.api("GET", "/api/v1/admin/maintenance").json()["enabled"] is False

    # Save in the reset-password form: the focus is back on the row's Reset password.
    body = {"user": "erin", "password": PW, "policies": []}
    assert kiok.api("POST", "/api/v1/iam/users", json=body).status_code == 201
    page.goto(kiok.url + "/settings/users")
    row = page.locator("tr[data-user=erin]")
    reset = row.get_by_role("button", name="Reset password")
    reset.click()
    row.get_by_label("New password for erin").fill(PW + "-new")
    row.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Password of erin set.")
    expect(reset).to_be_focused()
    # Delete, confirmed: the row is gone, the notice has the focus.
    row.get_by_role("button", name="Delete user erin").click()
    row.get_by_role("button", name="Yes, delete").click()
    notice = page.get_by_role("status")
    expect(notice).to_have_text("User erin deleted.")
    expect(notice).to_be_focused()

    # Yes, re-run: the re-run buttons go (the run runs again); the notice has the focus. The
    # notice goes once the re-run has ended, so the failing task takes long enough to be seen
    # (``chain`` fails in milliseconds: its notice could go before it was looked for).
    kiok.register(SLOW_CHAIN)
    run_id = kiok.trigger("slow_chain")
    assert kiok.wait_run(run_id, timeout_s=60)["state"] == "FAILED"
    page.goto(kiok.url + f"/runs/{run_id}")
    page.get_by_role("button", name="Re-run failed").click()
    page.get_by_role("button", name="Yes, re-run").click()
    notice = page.get_by_test_id("run-notice")
    expect(notice).to_have_text("Re-run started.")
    expect(notice).to_be_focused()
    page.screenshot(path=str(shots / "s23b-rerun-notice.png"))
    context.close()
    assert console.errors == []


def test_deletes_and_rotate_ask_inline_not_in_a_browser_dialog(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    doc = {"Statement": [{"Effect": "Allow", "Action": "dags:List", "Resource": "*"}]}
    assert kiok.api("POST", "/api/v1/iam/policies", json={"policy": "doomed", "document": doc}).is_success
    assert kiok.api("POST", "/api/v1/iam/groups", json={"group": "doomed-group", "policies": []}).is_success
    conn = {"connectionId": "doomed-conn", "type": "http", "properties": {"url": "https://x.example"}}
    assert kiok.api("POST", "/api/v1/connections", json=conn).is_success
    user = {"user": "keyholder", "password": PW, "policies": []}
    assert kiok.api("POST", "/api/v1/iam/users", json=user).is_success
    key = kiok.api("POST", "/api/v1/iam/access-keys", json={"user": "keyholder"}).json()["accessKeyId"]
    context, page, console = new_page(browser)
    dialogs: list[str] = []

    def refuse(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", refuse)
    log_in(page, kiok, "/settings/policies")

    def ask_then_confirm(scope: Any, name: str, yes: str) -> None:
        """Ask, check the inline confirm (focused, Escape closes it, the focus goes back), then
        ask again and confirm."""
        button = scope.get_by_role("button", name=name)
        button.click()
        confirm = page.get_by_role("group", name=f"Confirm: {name}")
        expect(confirm.get_by_role("button", name=yes)).to_be_focused()
        page.screenshot(path=str(shots / f"s23b-confirm-{name.split()[-1]}.png"))
        page.keyboard.press("Escape")
        expect(confirm).to_have_count(0)
        expect(button).to_be_focused()
        button.click()
        confirm.get_by_role("button", name=yes).click()

    ask_then_confirm(page.locator("[data-policy=doomed]"), "Delete doomed", "Yes, delete")
    expect(page.get_by_role("status")).to_have_text("Policy doomed deleted.")
    expect(page.locator("[data-policy=doomed]")).to_have_count(0)

    page.goto(kiok.url + "/settings/groups")
    ask_then_confirm(page.locator("tr[data-group=doomed-group]"), "Delete group doomed-group", "Yes, delete")
    expect(page.locator("tr[data-group=doomed-group]")).to_have_count(0)

    page.goto(kiok.url + "/settings/access-keys")
    ask_then_confirm(page.locator(f"tr[data-key='{key}']"), f"Delete access key {key}", "Yes, delete")
    expect(page.locator(f"tr[data-key='{key}']")).to_have_count(0)

    page.goto(kiok.url + "/settings/connections")
    row = page.locator("tr[data-connection=doomed-conn]")
    ask_then_confirm(row, "Delete connection doomed-conn", "Yes, delete")
    expect(page.locator("tr[data-connection=doomed-conn]")).to_have_count(0)

    page.goto(kiok.url + "/settings/kms")
    row = page.get_by_test_id("kms").locator("tbody tr").first
    before = row.get_by_test_id("version").inner_text()
    name = row.get_attribute("data-key")
    ask_then_confirm(row, f"Rotate {name}", "Yes, rotate")
    expect(row.get_by_test_id("version")).not_to_have_text(before)
    page.screenshot(path=str(shots / "s23b-kms-rotated.png"))
    assert dialogs == []
    context.close()
    assert console.errors == []


def test_a_new_policy_draft_is_not_lost_to_edit(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    context, page, console = new_page(browser)
    log_in(page, kiok, "/settings/policies")
    editor = page.get_by_test_id("policy-editor")
    editor.get_by_label("Policy name").fill("draft-one")
    editor.get_by_label("Policy document (JSON)").fill('{"Statement": []}')
    edit = page.get_by_role("button", name="Edit full-access")
    edit.click()
    ask = page.get_by_test_id("policy-discard")
    expect(ask).to_contain_text("Your changes to the new policy draft-one are not saved")
    expect(ask.get_by_role("button", name="Discard changes")).to_be_focused()
    page.screenshot(path=str(shots / "s23b-policy-discard.png"))
    # Keep editing (or Escape): the draft stays, the focus goes back to Edit.
    ask.get_by_role("button", name="Keep editing").click()
    expect(ask).to_have_count(0)
    expect(edit).to_be_focused()
    expect(editor.get_by_role("heading")).to_have_text("New policy")
    expect(editor.get_by_label("Policy name")).to_have_value("draft-one")
    expect(editor.get_by_label("Policy document (JSON)")).to_have_value('{"Statement": []}')
    # Discard: the policy is loaded.
    edit.click()
    ask.get_by_role("button", name="Discard changes").click()
    expect(editor.get_by_role("heading")).to_have_text("Edit policy full-access")
    expect(editor.get_by_label("Policy document (JSON)")).to_be_focused()
    # Unchanged: Edit and "New policy instead" ask nothing.
    editor.get_by_role("button", name="New policy instead").click()
    expect(editor.get_by_role("heading")).to_have_text("New policy")
    expect(ask).to_have_count(0)
    context.close()
    assert console.errors == []


def test_an_unknown_runs_cursor_is_the_first_page(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    ids = []
    for _ in range(3):
        ids.append(kiok.trigger("quick"))
        kiok.wait_run(ids[-1], timeout_s=60)
    context, page, console = new_page(browser)
    table = page.locator("table.grid-table")
    log_in(page, kiok, "/dags")
    for bogus in ("999999999", "0", "abc", "5,9"):
        page.goto(kiok.url + f"/dags/quick?limit=2&page={bogus}")
        expect(page).to_have_url(kiok.url + "/dags/quick?limit=2")
        expect(table).to_contain_text(ids[2])
        expect(page.get_by_test_id("runs-page")).to_have_count(0)
        expect(page.get_by_test_id("runs-pager").get_by_role("button", name="← Newer runs")).to_be_disabled()
    page.screenshot(path=str(shots / "s23b-dag-bogus-page.png"))
    # A real page, reloaded, is kept.
    page.get_by_test_id("runs-pager").get_by_role("button", name="Older runs →").click()
    expect(page.get_by_test_id("runs-page")).to_have_text("(page 2)")
    page.reload()
    expect(page.get_by_test_id("runs-page")).to_have_text("(page 2)")
    expect(table).not_to_contain_text(ids[2])
    context.close()
    assert console.errors == []
