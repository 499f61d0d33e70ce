"""The dashboard, the DAG list, Register and Settings in a real browser against a real
``kiok standalone``: counts, chart and failed runs at ``/``; schedules in words with the next
fire time, filters; a broken DAG's problem marked at its line; settings tabs (create a user
with a read-only policy, KMS, a join token shown once); a read-only user sees no write
actions; the UTC/local switch is remembered; a password an admin resets must be changed at the
user's next login (unless unticked; one's own is not reset there)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.e2e.conftest import TIMEOUT_MS, VIEWPORT, Console, choose_new_password
from tests.e2e.test_ui_audit import new_page

SCHEDULED = """dag: {id: ui_nightly, schedule: '0 2 * * *', timezone: Europe/Berlin, labels: [etl]}
tasks:
  - {id: a, script: 'echo a'}
"""
FAILING = """dag: {id: ui_breaks, description: fails on purpose, labels: [demo]}
tasks:
  - {id: ok, script: 'echo ok'}
  - {id: boom, requires: [ok], script: 'exit 3'}
"""
#: No worker has the label gpu: its run waits, and the dashboard says why.
GPU = """dag: {id: ui_gpu, labels: [gpu]}
tasks:
  - {id: train, script: 'echo train'}
"""
#: Line 7 is the refused one.
BROKEN = """dag:
  id: ui_pasted
tasks:
  - id: a
    script: echo a
  - id: b
    retries: -1
    script: echo b
"""
READER_PW = "Reader-First-Pw-123"
READER_NEW_PW = "Reader-Second-Pw-456"
READER_NEWER_PW = "Reader-Third-Pw-789"
#: bob's first password, the one an admin resets it to, and the one bob then chooses.
PW = "Bob-First-Pw-123"
NEW_PW = "Bob-Reset-Pw-456"
BOB_PW = "Bob-Own-Pw-789"


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(
        tmp_path_factory.mktemp("ui-admin") / "kiok",
        {"KIOK_WORKER_TASK_SLOTS": "4", "KIOK_WORKER_LABELS": "etl,demo"},
    )
    node.start()
    assert node.api("POST", "/api/v1/iam/users", json={"user": "bob", "password": PW}).status_code == 201
    yield node
    node.stop()


def open_page(
    browser: Any, kiok: Standalone, user: str, password: str, **ctx: Any
) -> tuple[Any, Any, Console]:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light", **ctx)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    console = Console()
    page.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console.errors.append(f"uncaught: {e}"))
    page.goto(kiok.url + "/")
    page.get_by_label("User").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    return context, page, console


def log_in(page: Any, kiok: Standalone, user: str, password: str, start: str) -> None:
    """Log in through the login page, which then goes on to ``start`` (or first asks for a new
    password)."""
    page.goto(kiok.url + "/login?next=" + start.replace("/", "%2F"))
    page.get_by_label("User").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def signed_in(
    browser: Any, kiok: Standalone, start: str, user: str = "admin", password: str = ADMIN_PASSWORD, **kw: Any
) -> tuple[Any, Any, Console]:
    """A new page (``kw`` for its context), logged in as ``user`` and sent on to ``start``."""
    from playwright.sync_api import expect

    context, page, console = new_page(browser, **kw)
    log_in(page, kiok, user, password, start)
    expect(page.get_by_test_id("user")).to_have_text(user)
    return context, page, console


def users(kiok: Standalone) -> dict[str, Any]:
    return {u["user"]: u for u in kiok.api("GET", "/api/v1/iam/users").json()["users"]}


def test_dashboard_dags_register_settings(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    kiok.register(SCHEDULED)
    kiok.register(FAILING)
    failed = kiok.trigger("ui_breaks")
    assert kiok.wait_run(failed)["state"] == "FAILED"
    kiok.wait_run(kiok.trigger("ui_nightly"))
    kiok.register(GPU)
    stuck = kiok.trigger("ui_gpu")
    context, page, console = open_page(browser, kiok, "admin", ADMIN_PASSWORD, timezone_id="Asia/Tokyo")

    # The dashboard at /: counts by state, the chart, the failed run.
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    counts = page.get_by_test_id("counts")
    expect(counts.locator("[data-state=FAILED] .count-n")).to_have_text("1")
    expect(counts.locator("[data-state=SUCCESS] .count-n")).to_have_text("1")
    expect(page.get_by_test_id("activity").locator("rect.bar")).to_have_count(30)
    expect(page.get_by_test_id("activity").locator("svg")).to_have_attribute(
        "aria-label", re.compile(r"^3 runs created and 3 tasks")
    )
    expect(page.get_by_test_id("failed").locator(f"[data-run='{failed}']")).to_contain_text("ui_breaks")
    expect(page.get_by_test_id("running")).to_have_text("Nothing is running.")
    expect(page.get_by_test_id("waiting").locator(f"[data-run='{stuck}']")).to_contain_text(re.compile("gpu"))
    page.screenshot(path=str(shots / "dashboard.png"))

    # The DAG list: schedule in words with the next fire time; filters by state and label.
    page.get_by_label("Main").get_by_role("link", name="DAGs").click()
    expect(page).to_have_url(kiok.url + "/dags")
    nightly = page.locator("tr[data-dag=ui_nightly]")
    expect(nightly.get_by_test_id("schedule")).to_contain_text("at 02:00 every day, Europe/Berlin")
    expect(nightly.get_by_test_id("schedule")).to_contain_text(
        re.compile(r"next \d{4}-\d\d-\d\d \d\d:00:00 UTC")
    )
    expect(page.locator("tr[data-dag=ui_breaks] .square[data-state=FAILED]")).to_have_count(1)
    expect(page.locator("tr[data-dag=ui_breaks]")).to_contain_text("manual")
    page.get_by_label("Filter by last run state").select_option("FAILED")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr")).to_have_attribute("data-dag", "ui_breaks")
    expect(page).to_have_url(kiok.url + "/dags?state=FAILED")
    page.get_by_label("Filter by last run state").select_option("")
    page.get_by_label("Filter by label").select_option("etl")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr")).to_have_attribute("data-dag", "ui_nightly")
    page.get_by_label("Filter by label").select_option("")

    # Times in local time (the browser's zone here is Tokyo), remembered across a reload.
    page.get_by_role("group", name="Times shown in").get_by_role("button", name="Local").click()
    expect(nightly.get_by_test_id("schedule")).to_contain_text(re.compile(r"next .* (09|10):00:00 GMT\+9"))
    page.reload()
    expect(page.locator("tr[data-dag=ui_nightly]").get_by_test_id("schedule")).to_contain_text("GMT+9")
    page.get_by_role("group", name="Times shown in").get_by_role("button", name="UTC").click()
    page.screenshot(path=str(shots / "dags-filters.png"))

    # Register by paste: the refused field is marked at its line; then a good one.
    page.get_by_role("link", name="Register DAG").click()
    expect(page).to_have_url(kiok.url + "/dags/register")
    page.get_by_label("DAG document").fill(BROKEN)
    page.get_by_role("button", name="Register", exact=True).click()
    problem = page.get_by_test_id("problems").locator("li")
    expect(problem).to_have_attribute("data-line", "7")
    expect(problem).to_contain_text("line 7")
    expect(problem).to_contain_text("tasks[1].retries")
    expect(page.locator(".gutter .bad")).to_have_text("7\n")
    console.take("status of 400")
    page.screenshot(path=str(shots / "register.png"))
    page.get_by_label("DAG document").fill(BROKEN.replace("retries: -1", "retries: 1"))
    page.get_by_role("button", name="Register", exact=True).click()
    expect(page.get_by_test_id("registered")).to_contain_text("ui_pasted (v1)")
    assert kiok.api("GET", "/api/v1/dags/ui_pasted").status_code == 200

    # Settings: a read-only policy, a user with it; KMS keys; a join token shown once.
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["dags:List", "dags:Read", "runs:List", "runs:Read"],
                "Resource": "*",
            }
        ]
    }
    assert (
        kiok.api("POST", "/api/v1/iam/policies", json={"policy": "read-only", "document": policy}).status_code
        == 201
    )
    page.get_by_label("Main").get_by_role("link", name="Settings").click()
    expect(page).to_have_url(kiok.url + "/settings/users")
    form = page.get_by_test_id("create-user")
    form.get_by_label("User").fill("ui-reader")
    form.get_by_label("First password").fill(READER_PW)
    form.get_by_label("Policy").select_option("read-only")
    form.get_by_role("button", name="Create user").click()
    reader_row = page.locator("tr[data-user=ui-reader]")
    expect(reader_row).to_contain_text("read-only")
    # An admin sets a new password for the user.
    reader_row.get_by_role("button", name="Reset password").click()
    page.get_by_label("New password for ui-reader").fill(READER_NEW_PW)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Password of ui-reader set.")
    page.screenshot(path=str(shots / "settings.png"))
    page.get_by_label("Settings").get_by_role("link", name="KMS keys").click()
    kms = page.get_by_test_id("kms")
    first_key = kms.locator("tbody tr").first
    before = first_key.get_by_test_id("version").inner_text()
    first_key.get_by_role("button", name=re.compile("^Rotate")).click()
    first_key.get_by_role("button", name="Yes, rotate").click()
    expect(first_key.get_by_test_id("version")).not_to_have_text(before)
    page.get_by_label("Settings").get_by_role("link", name="Join tokens").click()
    page.get_by_role("button", name="Create join token").click()
    expect(page.get_by_test_id("join-token").locator("code")).to_have_text(re.compile(r".{20,}"))
    page.get_by_label("Settings").get_by_role("link", name="Audit log").click()
    expect(page.get_by_test_id("audit")).to_contain_text("iam/user/ui-reader")
    kiok.api("POST", f"/api/v1/runs/{stuck}/cancel")
    context.close()
    assert console.errors == []

    # The read-only user, with the password the admin set: no write action is offered.
    context, page, console = open_page(browser, kiok, "ui-reader", READER_NEW_PW)
    # An admin's reset: a new password first, the rules said up front.
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    expect(page.get_by_text("At least 8 characters, different from the current one")).to_be_visible()
    choose_new_password(page, READER_NEW_PW, READER_NEWER_PW)
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    page.get_by_label("Main").get_by_role("link", name="DAGs").click()
    expect(page.locator("tr[data-dag=ui_breaks] .square")).to_have_count(1)
    expect(page.get_by_role("button", name="Run ui_breaks")).to_have_count(0)
    expect(page.get_by_role("link", name="Register DAG")).to_have_count(0)
    expect(page.locator("tr[data-dag=ui_breaks] input[role=switch]")).to_be_disabled()
    page.locator("tr[data-dag=ui_breaks]").get_by_role("link", name="ui_breaks", exact=True).click()
    expect(page.get_by_role("heading", name="ui_breaks")).to_be_visible()
    expect(page.get_by_role("button", name="Run")).to_have_count(0)
    page.get_by_label("Main").get_by_role("link", name="Settings").click()
    # Only the pages every user has (its own access keys and password): no Users, no KMS.
    expect(page.get_by_label("Settings").get_by_role("link")).to_have_text(["Access keys", "Password"])
    expect(page.get_by_role("button", name="Create access key")).to_be_visible()
    context.close()
    assert console.errors == []


def test_a_reset_password_must_be_changed_at_the_next_login(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    context, page, console = signed_in(browser, kiok, "/settings/users")
    row = page.locator("tr[data-user=bob]")
    expect(row.get_by_test_id("must-change")).to_have_count(0)
    row.get_by_role("button", name="Reset password").click()
    row.get_by_label("New password for bob").fill(NEW_PW)
    row.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("bob must choose a new one at the next login")
    expect(row.get_by_test_id("must-change")).to_have_text("must change password")
    assert users(kiok)["bob"]["requirePasswordChange"] is True
    page.screenshot(path=str(shots / "s22b-users-reset.png"))
    context.close()
    assert console.errors == []

    # bob, in a browser of his own: the new password first, then the pages.
    context, page, console = new_page(browser)
    log_in(page, kiok, "bob", NEW_PW, "/settings")
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    page.screenshot(path=str(shots / "s22b-bob-must-change.png"))
    choose_new_password(page, NEW_PW, BOB_PW)
    expect(page.get_by_test_id("user")).to_have_text("bob")
    assert users(kiok)["bob"]["requirePasswordChange"] is False
    context.close()
    assert console.errors == []

    # Unticked (a scripts' user, whose access keys a required change would refuse): set only.
    context, page, console = signed_in(browser, kiok, "/settings/users")
    row = page.locator("tr[data-user=bob]")
    row.get_by_role("button", name="Reset password").click()
    row.get_by_label("New password for bob").fill(NEW_PW)
    row.get_by_label("must choose a new one at next login").uncheck()
    page.screenshot(path=str(shots / "s22b-users-reset-untick.png"))
    row.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Password of bob set.")
    assert users(kiok)["bob"]["requirePasswordChange"] is False
    # One's own password is changed under Settings → Password, not reset here.
    expect(page.locator("tr[data-user=admin]").get_by_role("button", name="Reset password")).to_have_count(0)
    context.close()
    assert console.errors == []
