"""The run view as its user's policies and clock settings want it, in a real browser against a
real ``kiok standalone``: a user who may read runs but not re-run or cancel them is not
offered those buttons (an admin is), and the run view, its timeline and the task log follow
the header's UTC / Local switch."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.e2e.conftest import TIMEOUT_MS, VIEWPORT, Console

READER_PW = "Run-Reader-Pw-123"
DAGS = """
dag: {id: ui_acl, params: {hold: {type: integer, default: 0}}}
tasks:
  - {id: ok, script: 'sleep ${params.hold}; echo fine'}
  - {id: boom, requires: [ok], script: 'exit 3'}
"""
#: A time as ``when()`` shows it: "2026-05-04 12:03:09 UTC" or with the browser's zone name.
SHOWN = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (\S+)")
#: The browser's zone in the zone test: UTC+05:30 all year, so local differs visibly from UTC.
ZONE = "Asia/Kolkata"


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-acl") / "kiok")
    node.start()
    node.register(DAGS)
    yield node
    node.stop()


def open_page(
    browser: Any, kiok: Standalone, user: str, password: str, start: str, **context_options: Any
) -> tuple[Any, Any, Console, list[str]]:
    """A logged-in page at ``start``, and the URLs of the ``/api/v1/me`` answers it got."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light", **context_options)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    console = Console()
    page.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console.errors.append(f"uncaught: {e}"))
    me: list[str] = []
    page.on("response", lambda r: me.append(r.url) if r.url.endswith("/api/v1/me") else None)
    page.goto(kiok.url + "/login?next=" + start.replace("/", "%2F"))
    page.get_by_label("User").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("user")).to_have_text(user)
    return context, page, console, me


def wait_until(page: Any, predicate: Any, what: str) -> None:
    for _ in range(int(TIMEOUT_MS / 100)):
        if predicate():
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"timed out waiting for {what}")


def test_rerun_and_cancel_hidden_without_the_policy(kiok: Standalone, browser: Any) -> None:
    from playwright.sync_api import expect

    failed = kiok.trigger("ui_acl")
    assert kiok.wait_run(failed, timeout_s=60)["state"] == "FAILED"
    going = kiok.trigger("ui_acl", {"hold": 600})
    kiok.wait_for(lambda: kiok.run(going)["state"] == "RUNNING", 60, "the holding run to start")
    read = ["dags:List", "dags:Read", "runs:List", "runs:Read", "logs:Read"]
    policy = {"Statement": [{"Effect": "Allow", "Action": read, "Resource": "*"}]}
    r = kiok.api("POST", "/api/v1/iam/policies", json={"policy": "runs-reader", "document": policy})
    assert r.status_code == 201, r.text
    body = {"user": "runs-reader", "password": READER_PW, "policies": ["runs-reader"]}
    assert kiok.api("POST", "/api/v1/iam/users", json=body).status_code == 201

    # The reader: a failed run with no Re-run, a running one with no Cancel.
    context, page, console, me = open_page(browser, kiok, "runs-reader", READER_PW, f"/runs/{failed}")
    expect(page.get_by_test_id("run-state")).to_contain_text("FAILED")
    expect(page.locator("table.jobs tr[data-task=boom]")).to_contain_text("FAILED")
    wait_until(page, lambda: bool(me), "GET /api/v1/me")
    page.wait_for_timeout(300)  # the view redraws once /me has answered
    expect(page.get_by_role("button", name="Re-run failed")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Re-run from"))).to_have_count(0)
    page.goto(kiok.url + f"/runs/{going}")
    expect(page.get_by_test_id("run-state")).to_contain_text("RUNNING")
    page.wait_for_timeout(300)
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    context.close()
    assert console.errors == []

    # An admin is offered all three.
    context, page, console, _ = open_page(browser, kiok, "admin", ADMIN_PASSWORD, f"/runs/{going}")
    expect(page.get_by_role("button", name="Cancel run")).to_be_visible()
    page.goto(kiok.url + f"/runs/{failed}")
    expect(page.get_by_role("button", name="Re-run failed")).to_be_visible()
    expect(page.get_by_role("button", name="Re-run from boom")).to_be_visible()
    context.close()
    assert console.errors == []
    kiok.api("POST", f"/api/v1/runs/{going}/cancel")


def shown(text: str) -> tuple[datetime, str]:
    m = SHOWN.search(text)
    assert m, text
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"), m.group(2)


def test_run_timeline_and_log_follow_the_zone_switch(kiok: Standalone, browser: Any) -> None:
    from playwright.sync_api import expect

    run_id = kiok.trigger("ui_acl")
    kiok.wait_run(run_id, timeout_s=60)
    context, page, console, _ = open_page(
        browser, kiok, "admin", ADMIN_PASSWORD, f"/runs/{run_id}", timezone_id=ZONE
    )
    created = page.locator("dt:text-is('Created') + dd")
    origin = page.get_by_test_id("timeline-origin")
    expect(created).to_contain_text(" UTC")
    utc_created, _ = shown(created.inner_text())
    page.get_by_role("tab", name="Timeline").click()
    expect(origin).to_contain_text(" UTC")
    utc_origin, _ = shown(origin.inner_text())

    switch = page.get_by_role("group", name="Times shown in")
    switch.get_by_role("button", name="Local").click()
    expect(origin).not_to_contain_text(" UTC")
    local_origin, zone = shown(origin.inner_text())
    assert zone != "UTC"
    assert (local_origin - utc_origin).total_seconds() == 5.5 * 3600
    local_created, _ = shown(created.inner_text())
    assert (local_created - utc_created).total_seconds() == 5.5 * 3600

    # The task log, and back to UTC.
    page.locator("table.jobs tr[data-task=ok] a").click()
    times = page.get_by_test_id("log-times")
    expect(times).to_contain_text("ended")
    local_started, zone = shown(times.inner_text())
    assert zone != "UTC"
    switch.get_by_role("button", name="UTC").click()
    expect(times).to_contain_text(" UTC")
    utc_started, _ = shown(times.inner_text())
    assert (local_started - utc_started).total_seconds() == 5.5 * 3600
    context.close()
    assert console.errors == []


def test_login_next_never_leaves_this_origin(kiok: Standalone, browser: Any) -> None:
    """``/login?next=/\\evil.example`` starts with one slash but is another origin to the
    browser: after the login the app goes home instead (it used to throw, leaving a blank page)."""
    from playwright.sync_api import expect

    context, page, console, _ = open_page(browser, kiok, "admin", ADMIN_PASSWORD, "/\\evil.example/%09/")
    expect(page).to_have_url(kiok.url + "/")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    context.close()
    assert console.errors == []
