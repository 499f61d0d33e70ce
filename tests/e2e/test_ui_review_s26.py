"""Fixes from a fifth review of the UI, in a real browser against a real ``kiok standalone``:
the active/paused switch and the password form kept the keyboard's focus (a control disabled
while its request ran dropped it on <body>); a first row's attempt number is no longer drawn
under the grid's sticky header; a scheduled or backfilled run says which time it is for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import Standalone
from tests.e2e.test_ui_audit import log_in, new_page

#: Its first task succeeds at its third attempt: the grid's first row carries an attempt number.
RETRIES = """
dag: {id: s26_retries}
tasks:
  - {id: flaky, retries: 2, retry_delay: 0s, script: '[ "$KIOK_ATTEMPT" -ge 3 ]'}
  - {id: after, requires: [flaky], script: 'true'}
"""
DAILY = """
dag: {id: s26_daily, schedule: '0 1 * * *'}
tasks:
  - {id: t, script: 'true'}
"""


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-review-s26") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "4"})
    node.start()
    yield node
    node.stop()


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


def test_the_first_rows_attempt_number_is_not_under_the_header(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    kiok.register(RETRIES)
    run_id = kiok.trigger("s26_retries")
    assert kiok.wait_run(run_id, timeout_s=60)["state"] == "SUCCESS"
    context, page, console = new_page(browser)
    log_in(page, kiok, "/dags/s26_retries/grid")
    first = page.get_by_test_id("grid").locator(".grow .gc[data-attempt='3']")
    expect(first).to_have_count(1)
    hidden = first.evaluate("""(cell) => {
      const head = document.querySelector(".grid-head").getBoundingClientRect();
      const top = parseFloat(getComputedStyle(cell, "::after").top);
      return head.bottom - (cell.getBoundingClientRect().top + top);
    }""")
    assert hidden <= 0, f"the attempt number is {hidden} px under the header"
    page.screenshot(path=str(shots / "s26-grid-first-row.png"))
    context.close()
    assert console.errors == []


def test_a_backfilled_run_says_which_time_it_is_for(kiok: Standalone, browser: Any, shots: Path) -> None:
    """Before: fifteen backfilled runs all read "backfill" and their creation time."""
    from playwright.sync_api import expect

    kiok.register(DAILY)
    body = {"from": "2026-11-20T00:00:00Z", "to": "2026-11-22T00:00:00Z"}
    r = kiok.api("POST", "/api/v1/dags/s26_daily/backfill", json=body)
    assert r.status_code in (200, 201), r.text
    runs = kiok.api("GET", "/api/v1/runs", params={"dag": "s26_daily"}).json()["runs"]
    fors = sorted(run["scheduledAt"] for run in runs if run["trigger"] == "backfill")
    assert fors == ["2026-11-20T01:00:00.000Z", "2026-11-21T01:00:00.000Z"], runs
    context, page, console = new_page(browser)
    log_in(page, kiok, "/dags/s26_daily")
    expect(page.get_by_test_id("run-for")).to_have_text(
        [" for 2026-11-21 01:00:00 UTC", " for 2026-11-20 01:00:00 UTC"]
    )
    page.screenshot(path=str(shots / "s26-backfill-runs.png"))
    run = next(run for run in runs if run["scheduledAt"] == "2026-11-20T01:00:00.000Z")
    page.goto(kiok.url + f"/runs/{run['runId']}")
    start, end = (f"{t[:10]} {t[11:19]} UTC" for t in (run["interval"]["start"], run["interval"]["end"]))
    expect(page.get_by_test_id("run-interval")).to_have_text(f"{start} – {end}")
    page.screenshot(path=str(shots / "s26-backfill-run.png"))
    context.close()
    assert console.errors == []
