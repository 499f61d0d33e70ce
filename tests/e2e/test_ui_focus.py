"""Where the keyboard's focus goes after an action, and what the page says, in a real browser
against a real ``kiok standalone``: an inline confirm (never a browser dialog: deletes, Rotate,
maintenance, Cancel run) takes the focus, and Escape closes it and gives the focus back; the
password reset is a form with its field focused, and the forced password change focuses its
first field; a confirmed action leaves the focus on what replaced its button or on a notice
saying what was done (maintenance, a user deleted, Re-run, Cancel run, a worker revoked), the
run's notice going once the run has ended; a refused submit (Start run, Create group, Change
password) and the pause switch keep it; a new failure clears the last success's notice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import Standalone
from tests.e2e.test_ui_audit import log_in, new_page
from tests.e2e.test_ui_dag_pages import DAILY

PW = "Focus-Pw-123"
DESKTOP = {"width": 1366, "height": 768}
#: ``head`` fails after a while: the re-run's notice stays while it runs.
SLOW_CHAIN = """
dag: {id: slow_chain}
tasks:
  - {id: head, script: 'sleep 3; exit 1'}
  - {id: tail, requires: [head], script: 'true'}
"""
#: Its task ignores SIGTERM, so a cancelled run goes on for the 5 s grace before SIGKILL.
STUBBORN = """
dag: {id: s24_stubborn}
tasks:
  - {id: hold, script: 'trap "" TERM; sleep 600'}
"""
#: Fails after 3 s: a re-run runs for a while, then fails again.
SLOW_FAIL = """
dag: {id: s24_slow_fail}
tasks:
  - {id: ok, script: 'true'}
  - {id: boom, requires: [ok], script: 'sleep 8; exit 1'}
"""
ONE = """
dag: {id: s25_one}
tasks:
  - {id: t, script: 'true'}
"""


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-focus") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
    node.start()
    node.wait_for(lambda: node.api("GET", "/api/v1/cluster").json()["workers"], 30, "the worker")
    yield node
    node.stop()


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


def test_cancel_confirmed_by_keyboard_leaves_the_focus_on_a_notice(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    """Before: after Enter on "Yes, cancel" the focus fell to <body> and nothing said what was done."""
    from playwright.sync_api import expect

    kiok.register(STUBBORN)
    run_id = kiok.trigger("s24_stubborn")
    kiok.wait_for(lambda: kiok.run(run_id)["tasks"]["hold"]["state"] == "RUNNING", 60, "the task to start")
    context, page, console = new_page(browser, viewport=DESKTOP)
    log_in(page, kiok, f"/runs/{run_id}")
    cancel = page.get_by_role("button", name="Cancel run")
    cancel.focus()
    page.keyboard.press("Enter")
    yes = page.get_by_role("button", name="Yes, cancel")
    expect(yes).to_be_focused()
    page.keyboard.press("Enter")
    notice = page.get_by_test_id("run-notice")
    expect(notice).to_have_text("Cancel requested: the running tasks are being stopped.")
    expect(notice).to_be_focused()
    expect(notice).to_have_attribute("role", "status")
    expect(cancel).to_have_count(0)  # requested once: not offered again
    page.screenshot(path=str(shots / "s24-cancel-requested.png"))
    # The run ends (SIGKILL after the grace): the notice goes, the focus is on the button back
    # in its place.
    expect(page.get_by_test_id("run-state")).to_contain_text("CANCELLED", timeout=30_000)
    expect(notice).to_have_count(0)
    expect(page.get_by_role("button", name="Re-run cancelled")).to_be_focused()
    page.screenshot(path=str(shots / "s24-cancel-done.png"))
    context.close()
    assert console.errors == []


def test_the_rerun_notice_goes_once_the_rerun_has_ended(kiok: Standalone, browser: Any, shots: Path) -> None:
    """Before: "Re-run started." stayed after the re-run had failed."""
    from playwright.sync_api import expect

    kiok.register(SLOW_FAIL)
    run_id = kiok.trigger("s24_slow_fail")
    assert kiok.wait_run(run_id, timeout_s=60)["state"] == "FAILED"
    context, page, console = new_page(browser, viewport=DESKTOP)
    log_in(page, kiok, f"/runs/{run_id}")
    rerun = page.get_by_role("button", name="Re-run failed")
    rerun.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Yes, re-run")).to_be_focused()
    page.keyboard.press("Enter")
    notice = page.get_by_test_id("run-notice")
    expect(notice).to_have_text("Re-run started.")
    expect(notice).to_be_focused()
    expect(page.get_by_test_id("run-state")).to_contain_text("RUNNING")
    page.screenshot(path=str(shots / "s24-rerun-started.png"))
    expect(page.get_by_test_id("run-state")).to_contain_text("FAILED", timeout=30_000)
    expect(notice).to_have_count(0)
    expect(rerun).to_be_focused()
    page.screenshot(path=str(shots / "s24-rerun-ended.png"))
    context.close()
    assert console.errors == []


def test_a_revoked_workers_row_goes_and_the_page_says_so_with_the_focus(
    kiok: Standalone, browser: Any
) -> None:
    """Found by the second UI review: confirmed by keyboard, the row went and the focus with it,
    and nothing said the worker was revoked. (The master is not asked: this standalone's own
    worker stays; the page is answered as if it had gone.)"""
    from playwright.sync_api import expect

    worker = kiok.api("GET", "/api/v1/cluster").json()["workers"][0]["id"]
    gone: list[bool] = []
    context, page, console = new_page(browser)

    def revoked(route: Any) -> None:
        gone.append(True)
        route.fulfill(status=200, json={"revoked": worker})

    page.route("**/api/v1/admin/workers/**", revoked)

    def cluster(route: Any) -> None:
        answer = route.fetch()
        body = answer.json()
        if gone:
            body["workers"] = [w for w in body["workers"] if w["id"] != worker]
        route.fulfill(response=answer, json=body)

    page.route("**/api/v1/cluster", cluster)
    log_in(page, kiok, "/cluster")
    revoke = page.get_by_test_id("workers").get_by_role("button", name=f"Revoke {worker}")
    revoke.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Yes, revoke")).to_be_focused()
    page.keyboard.press("Enter")
    notice = page.get_by_test_id("cluster-notice")
    expect(notice).to_have_text(f"Worker {worker} revoked: it needs a new join token to come back.")
    expect(notice).to_be_focused()
    context.close()
    assert console.errors == []


def test_a_refused_submit_gives_the_focus_back_to_its_button(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    """Before: the button, disabled while the request ran, lost the focus to <body>."""
    from playwright.sync_api import expect

    kiok.register(ONE)
    context, page, console = new_page(browser)
    log_in(page, kiok, "/dags/s25_one")
    assert kiok.api("POST", "/api/v1/admin/maintenance", json={"enabled": True}).status_code == 200
    try:
        page.get_by_role("button", name="Run").first.click()
        start = page.get_by_role("button", name="Start run")
        expect(start).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.get_by_role("dialog").get_by_role("alert")).to_contain_text("maintenance")
        expect(start).to_be_focused()
        page.screenshot(path=str(shots / "s25-start-refused.png"))
    finally:
        assert kiok.api("POST", "/api/v1/admin/maintenance", json={"enabled": False}).status_code == 200
    console.take("status of 503")

    # A settings form: Create group with a name the master refuses.
    page.goto(kiok.url + "/settings/groups")
    form = page.get_by_role("form", name="Create group")
    form.get_by_label("Group").fill("no spaces allowed")
    button = form.get_by_role("button", name="Create group")
    button.focus()
    page.keyboard.press("Enter")
    expect(form.get_by_role("alert")).to_be_visible()
    expect(button).to_be_focused()
    console.take("status of 400")
    context.close()
    assert console.errors == []


# Before: the Change password button, disabled while its request ran, dropped the focus on <body>.
def test_a_refused_password_change_keeps_the_focus_on_its_button(kiok: Standalone, browser: Any) -> None:
    from playwright.sync_api import expect

    context, page, console = new_page(browser)
    log_in(page, kiok, "/settings/password")
    form = page.get_by_test_id("change-password")
    form.get_by_label("Current password").fill("not-the-password")
    form.get_by_label("New password", exact=True).fill("Another-Pw-26-xyz")
    form.get_by_label("New password again").fill("Another-Pw-26-xyz")
    button = form.get_by_role("button", name="Change password")
    button.focus()
    page.keyboard.press("Enter")
    expect(form.get_by_role("alert")).to_contain_text("the current password is wrong")
    expect(button).to_be_focused()
    console.take("status of 401")
    context.close()
    assert console.errors == []


def test_the_pause_switch_keeps_the_focus(kiok: Standalone, browser: Any) -> None:
    """Before: Space paused the DAG and the focus fell to <body>; a second Space did nothing."""
    from playwright.sync_api import expect

    kiok.register(DAILY)
    context, page, console = new_page(browser)
    log_in(page, kiok, "/dags/s26_daily")
    switch = page.get_by_role("switch", name="s26_daily active")
    switch.focus()
    page.keyboard.press("Space")
    expect(switch).not_to_be_checked()
    expect(switch).to_be_enabled()
    expect(switch).to_be_focused()
    assert kiok.api("GET", "/api/v1/dags/s26_daily").json()["paused"] is True
    page.keyboard.press("Space")  # the keyboard goes on from it: back to active
    expect(switch).to_be_checked()
    expect(switch).to_be_focused()
    assert kiok.api("GET", "/api/v1/dags/s26_daily").json()["paused"] is False
    context.close()
    assert console.errors == []


def test_a_new_failure_clears_the_last_success(kiok: Standalone, browser: Any) -> None:
    """Before: "User viewer created." stayed above "Failed: A user named viewer already
    exists"; saving a connection likewise (its own checks refused before the notice went)."""
    from playwright.sync_api import expect

    context, page, console = new_page(browser)
    log_in(page, kiok, "/settings/users")
    form = page.get_by_test_id("create-user")
    for attempt in range(2):
        form.get_by_label("User", exact=True).fill("viewer")
        form.get_by_label("First password").fill("ViewerPass123!")
        form.get_by_role("button", name="Create user").click()
        if attempt == 0:
            expect(page.locator(".ok-box")).to_have_text("User viewer created.")
    expect(form.get_by_role("alert")).to_contain_text("viewer")
    expect(page.locator(".ok-box")).to_have_count(0)

    page.goto(kiok.url + "/settings/connections")
    form = page.get_by_test_id("create-connection")
    form.get_by_label("Id").fill("pg-main")
    form.get_by_label("Properties (one key=value a line)").fill("host=db.local")
    form.get_by_role("button", name="Save connection").click()
    expect(page.locator(".ok-box")).to_have_text("Connection pg-main saved.")
    form.get_by_label("Id").fill("pg-main")
    form.get_by_role("button", name="Save connection").click()
    expect(form.get_by_role("alert")).to_contain_text("connection pg-main exists")
    expect(page.locator(".ok-box")).to_have_count(0)
    context.close()
    assert console.errors == []
