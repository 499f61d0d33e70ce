"""The DAG list, a DAG's page and the Register page, in a real browser against a real ``kiok
standalone``: the DAG's version with the time it was registered (not moved by a pause or an
unpause); a pause switch the user may not flip looking disabled, saying why; a DAG's runs paged
in the URL (over a reload and Back), a re-run run marked with its whole duration, and a cursor
the page was not given showing the first page; a backfilled run saying which time it is for
(on the DAG's page and its own); the Register page's file input without a stray box."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import Standalone
from tests.e2e.test_ui_audit import log_in, new_page, open_page
from tests.e2e.test_ui_error_pages import READER, READER_PW, add_reader
from tests.e2e.test_ui_job_list import FAILS
from tests.e2e.test_ui_run_dialog import PLAIN

QUICK = """
dag: {id: quick}
tasks:
  - {id: t, script: 'true'}
"""
DAILY = """
dag: {id: s26_daily, schedule: '0 1 * * *'}
tasks:
  - {id: t, script: 'true'}
"""


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-dag-pages") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
    node.start()
    for dag in (QUICK, FAILS):
        node.register(dag)
    add_reader(node)
    yield node
    node.stop()


def test_version_time_is_not_moved_by_pause(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    kiok.register(PLAIN)
    time.sleep(1.2)  # the times are shown to the second
    context, page, console = open_page(browser, kiok, "/dags/rv_plain")
    version = page.locator("dl.facts > div", has=page.locator("dt", has_text="Version")).locator("dd")
    expect(version).to_contain_text("v1, ")
    shown = version.inner_text()
    toggle = page.get_by_role("switch", name="rv_plain active")
    toggle.click(force=True)
    expect(page.locator("label.switch")).to_contain_text("paused")
    page.wait_for_timeout(1200)
    toggle.click(force=True)
    expect(page.locator("label.switch")).to_contain_text("active")
    page.wait_for_load_state("networkidle")
    assert (
        kiok.api("GET", "/api/v1/dags/rv_plain").json()["updatedAt"]
        != kiok.api("GET", "/api/v1/dags/rv_plain/versions").json()["versions"][0]["registeredAt"]
    )
    expect(version).to_have_text(shown)
    page.screenshot(path=str(shots / "dag_version_after_unpause.png"))
    # A new version shows its own time.
    kiok.register(PLAIN.replace("echo one", "echo uno"))
    page.reload()
    expect(version).to_contain_text("v2, ")
    registered = kiok.api("GET", "/api/v1/dags/rv_plain/versions").json()["versions"][0]["registeredAt"]
    expect(version).to_contain_text(registered[11:19])  # HH:MM:SS, shown in UTC
    assert console.errors == []
    context.close()


def test_pause_switch_the_user_may_not_flip_looks_disabled(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    context, page, console = open_page(browser, kiok, "/dags", user=READER, password=READER_PW)
    for where in ("dags", "dag"):
        if where == "dag":
            page.goto(kiok.url + "/dags/s22_fails")
        toggle = page.get_by_role("switch", name="s22_fails active")
        expect(toggle).to_be_disabled()
        label = page.locator("label.switch", has=toggle)
        expect(label).to_have_attribute("title", re.compile("do not allow pausing"))
        expect(label).to_have_css("cursor", "default")
        expect(label.locator(".track")).to_have_css("opacity", "0.45")
        page.screenshot(path=str(shots / f"s22_reader_switch_{where}.png"))
    assert console.errors == []
    context.close()

    # The admin's switch is not muted.
    context, page, console = open_page(browser, kiok, "/dags/s22_fails")
    toggle = page.get_by_role("switch", name="s22_fails active")
    expect(toggle).to_be_enabled()
    expect(page.locator("label.switch")).to_have_css("cursor", "pointer")
    expect(page.locator("label.switch .track")).to_have_css("opacity", "1")
    context.close()


# It pages exactly the five runs of quick it makes: it comes before the next test, which makes
# three more.
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


def test_register_file_input_has_no_stray_box(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    context, page, console = open_page(browser, kiok, "/dags/register")
    picker = page.locator(".file-pick input[type=file]")
    expect(picker).to_be_visible()
    expect(picker).to_have_css("background-color", "rgba(0, 0, 0, 0)")
    expect(picker).to_have_css("border-top-style", "none")
    page.locator(".file-pick").screenshot(path=str(shots / "s22_register_file.png"))
    assert console.errors == []
    context.close()
