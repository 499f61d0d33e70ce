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


LONG_ID = "very_long_dag_" + "x" * 170
ROWS = """
dag: {id: s26_rows}
tasks:
  - {id: t, script: 'for i in $(seq 1 400); do echo "row $i"; done'}
"""


def test_the_audit_log_fits_the_window_with_a_long_target(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    """Found by the second UI review: a 184-character DAG id made the audit table 2,146 px wide
    at 1280, its From and Result columns off screen and "password" broken mid-word."""
    from playwright.sync_api import expect

    kiok.register(f"dag: {{id: {LONG_ID}}}\ntasks:\n  - {{id: t, script: 'true'}}\n")
    assert kiok.api("POST", f"/api/v1/dags/{LONG_ID}/pause").status_code == 200
    context, page, console = new_page(browser)
    log_in(page, kiok, "/settings/audit")
    expect(page.get_by_test_id("audit").get_by_text(LONG_ID).first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth - innerWidth") <= 0
    page.screenshot(path=str(shots / "s26-audit-long-id.png"))
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


def test_saving_an_existing_connection_asks_before_replacing_it(kiok: Standalone, browser: Any) -> None:
    """Found by the second UI review: "editing" a connection's description (the only way: save
    its id again) replaced it whole, its type and secret values gone, without a word."""
    from playwright.sync_api import expect

    body = {"connectionId": "warehouse", "type": "postgres", "properties": {"password": "s26-secret"}}
    assert kiok.api("POST", "/api/v1/connections", json=body).status_code == 201
    context, page, console = new_page(browser)
    log_in(page, kiok, "/settings/connections")
    form = page.get_by_test_id("create-connection")
    form.get_by_label("Id").fill("warehouse")
    form.get_by_label("Description").fill("the warehouse")
    form.get_by_role("button", name="Save connection").click()
    expect(form.get_by_role("alert")).to_contain_text("connection warehouse exists")
    stored = kiok.api("GET", "/api/v1/connections/warehouse").json()
    assert (stored["type"], list(stored["properties"])) == ("postgres", ["password"]), stored
    form.get_by_label("Replace an existing connection").check()
    form.get_by_role("button", name="Save connection").click()
    expect(page.get_by_role("status")).to_have_text("Connection warehouse saved.")
    assert kiok.api("GET", "/api/v1/connections/warehouse").json()["description"] == "the warehouse"
    context.close()
    assert console.errors == []


def _searched(kiok: Standalone, browser: Any, dag: str, dag_id: str, query: str) -> tuple[Any, Any, Any]:
    """A run of ``dag`` (its task ``t``), its log opened, ``query`` typed and Enter pressed at
    once: (context, page, console)."""
    from playwright.sync_api import expect

    kiok.register(dag)
    run_id = kiok.trigger(dag_id)
    assert kiok.wait_run(run_id, timeout_s=60)["state"] == "SUCCESS"
    context, page, console = new_page(browser)
    log_in(page, kiok, f"/runs/{run_id}/tasks/t")
    expect(page.get_by_test_id("log-status")).to_contain_text("Complete")
    search = page.get_by_label("Search the log")
    search.fill(query)
    search.press("Enter")
    return context, page, console


def test_enter_right_after_typing_goes_to_the_first_match(kiok: Standalone, browser: Any) -> None:
    """Found by the second UI review: Enter straight after typing searched, but counted the
    matches of the render before (none) and stayed put; a second Enter went."""
    from playwright.sync_api import expect

    context, page, console = _searched(kiok, browser, ROWS, "s26_rows", "row 150")
    expect(page.get_by_test_id("log-matches")).to_have_text("1 of 1 match")
    expect(page.locator("mark.current")).to_have_text("row 150")
    context.close()
    assert console.errors == []


WIDE = """
dag: {id: s26_wide}
tasks:
  - id: t
    type: python
    script: |
      for i in range(100):
          print(str(i) + " " + "y" * 8000 + "MARKER" + str(i) + "z" * 50)
"""


def test_a_match_far_right_in_a_long_line_is_brought_into_view(kiok: Standalone, browser: Any) -> None:
    """Found by the second UI review: the search scrolled to the match's line but not sideways,
    so a match 60,000 px to the right stayed out of view."""
    from playwright.sync_api import expect

    context, page, console = _searched(kiok, browser, WIDE, "s26_wide", "MARKER50")
    mark = page.locator("mark.current")
    expect(mark).to_have_text("MARKER50")
    expect(mark).to_be_in_viewport()
    box = page.get_by_test_id("log").bounding_box()
    found = mark.bounding_box()
    assert box is not None and found is not None
    assert box["x"] <= found["x"] and found["x"] + found["width"] <= box["x"] + box["width"], (box, found)
    context.close()
    assert console.errors == []
