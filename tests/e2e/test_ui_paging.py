"""Page cursors kept in the URL, in a real browser against a real ``kiok standalone``: the
grid's pages and the audit log's (beside its filters), as a DAG page's runs are
(test_ui_dag_pages.py), so that a reload, a shared link or Back shows the same page (before,
both went back to the newest on a reload, and Back left the view); a cursor the page was not
given, past the newest, or malformed shows the first page; a new filter starts again at the
newest."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import Standalone
from tests.e2e.test_ui_audit import log_in, new_page


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-paging") / "kiok")
    node.start()
    node.register("dag: {id: quick}\ntasks:\n  - {id: t, script: 'true'}\n")
    yield node
    node.stop()


def test_the_grids_page_is_in_the_url(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    ids = []
    for _ in range(3):
        ids.append(kiok.trigger("quick"))
        kiok.wait_run(ids[-1], timeout_s=60)
    context, page, console = new_page(browser)
    log_in(page, kiok, "/dags/quick/grid?limit=2")
    head = page.locator(".grid-head")
    expect(head.locator(".grun")).to_have_count(2)
    expect(head.locator(f'a[href="/runs/{ids[2]}"]')).to_have_count(1)
    page.get_by_role("button", name="Older runs →").click()
    expect(page).to_have_url(re.compile(r"/dags/quick/grid\?limit=2&page=\d+$"))
    expect(head.locator(".grun")).to_have_count(1)
    expect(head.locator(f'a[href="/runs/{ids[0]}"]')).to_have_count(1)
    expect(page.get_by_test_id("grid-page")).to_have_text("(page 2)")
    page.reload()
    expect(head.locator(f'a[href="/runs/{ids[0]}"]')).to_have_count(1)
    expect(page.get_by_test_id("grid-page")).to_have_text("(page 2)")
    page.screenshot(path=str(shots / "s28-grid-page2.png"))
    page.go_back()
    expect(page).to_have_url(kiok.url + "/dags/quick/grid?limit=2")
    expect(head.locator(f'a[href="/runs/{ids[2]}"]')).to_have_count(1)
    expect(head.locator(".grun")).to_have_count(2)
    # A cursor this session was not given, past the newest run, or malformed: the first page.
    for bogus in ("999999999", "abc", "5,9", "1" * 24):  # 24 digits: past the API's cursors
        page.goto(kiok.url + f"/dags/quick/grid?limit=2&page={bogus}")
        expect(page).to_have_url(kiok.url + "/dags/quick/grid?limit=2")
        expect(head.locator(f'a[href="/runs/{ids[2]}"]')).to_have_count(1)
        expect(page.get_by_test_id("grid-page")).to_have_count(0)
    context.close()
    assert console.errors == []


def test_the_audit_logs_page_is_in_the_url_beside_its_filters(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    for _ in range(3):
        assert kiok.api("POST", "/api/v1/dags/quick/pause").is_success
        assert kiok.api("POST", "/api/v1/dags/quick/unpause").is_success
    context, page, console = new_page(browser)
    log_in(page, kiok, "/settings/audit")
    page.goto(kiok.url + "/settings/audit?action=dags%3APause&limit=4")
    rows = page.get_by_test_id("audit").locator("tbody tr")
    expect(rows).to_have_count(4)
    first = rows.first.inner_text()
    page.get_by_role("button", name="Older", exact=True).click()
    expect(page).to_have_url(re.compile(r"/settings/audit\?action=dags%3APause&limit=4&page=\d+$"))
    expect(page.get_by_test_id("audit-page")).to_have_text("Page 2")
    expect(rows).to_have_count(2)
    second = rows.all_inner_texts()
    page.reload()
    expect(page.get_by_test_id("audit-page")).to_have_text("Page 2")
    expect(rows).to_have_count(2)
    assert rows.all_inner_texts() == second
    assert page.get_by_label("Action").input_value() == "dags:Pause"  # the filter is kept
    page.screenshot(path=str(shots / "s28-audit-page2.png"))
    page.go_back()
    expect(page.get_by_test_id("audit-page")).to_have_count(0)
    expect(rows).to_have_count(4)
    assert rows.first.inner_text() == first
    # A cursor this session was not given, past the newest record the filter matches (a
    # filtered page was checked against the unfiltered log's newest, and kept as "Page 2").
    for bogus in ("99999999999999999999", "1" * 24):
        page.goto(kiok.url + f"/settings/audit?action=dags%3APause&limit=4&page={bogus}")
        expect(page).to_have_url(kiok.url + "/settings/audit?action=dags%3APause&limit=4")
        expect(page.get_by_test_id("audit-page")).to_have_count(0)
        expect(rows).to_have_count(4)
    # A new filter starts again at the newest.
    page.get_by_role("button", name="Older", exact=True).click()
    expect(page.get_by_test_id("audit-page")).to_have_text("Page 2")
    page.get_by_label("Action").fill("dags:*")
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(page).to_have_url(kiok.url + "/settings/audit?action=dags%3A*")
    expect(page.get_by_test_id("audit-page")).to_have_count(0)
    context.close()
    assert console.errors == []
