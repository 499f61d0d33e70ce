"""The main views in the dark theme (the browser's ``prefers-color-scheme: dark``), in a real
browser against a real ``kiok standalone``: each view is drawn with its data, and
``UI_SCREENSHOTS=1`` writes ``docs/ui/dark-*.png`` (linked from docs/ui.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.e2e.test_ui_grid_cluster import open_page

DAG = """dag: {id: ui_dark, description: Nightly ETL,
      params: {fail: {type: integer, default: 0}, hold: {type: integer, default: 0}}}
tasks:
  - {id: extract, script: 'printf "\\033[32mextracted\\033[0m 1200 rows from \\033[1mhttps://example.com/api\\033[0m\\n"'}
  - {id: clean, requires: [extract], script: 'echo cleaned'}
  - {id: enrich, requires: [extract], script: 'sleep ${params.hold}; echo enriched'}
  - {id: validate, requires: [clean], script: '[ ${params.fail} = 0 ] || { echo 3 rows bad >&2; exit 1; }'}
  - {id: load, requires: [validate, enrich], script: 'echo loaded'}
  - {id: report, requires: [load], script: 'echo report'}
"""


def test_main_views_in_the_dark_theme(shared_kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    kiok = shared_kiok
    kiok.register(DAG)
    done = []
    for fail in (0, 1, 0, 0):
        run_id = kiok.trigger("ui_dark", {"fail": fail})
        kiok.wait_run(run_id)
        done.append(run_id)
    holding = kiok.trigger("ui_dark", {"hold": 600})
    kiok.wait_for(lambda: kiok.run(holding)["tasks"]["enrich"]["state"] == "RUNNING", 60, "enrich to start")
    context, page, console = open_page(browser, kiok, "admin", ADMIN_PASSWORD, scheme="dark")
    try:
        assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")

        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        expect(page.get_by_test_id("running").locator(f"[data-run='{holding}']")).to_be_visible()
        expect(page.get_by_test_id("activity").locator("rect.bar").first).to_be_attached()
        page.screenshot(path=str(shots / "dark-dashboard.png"))

        page.goto(kiok.url + "/dags")
        expect(page.locator("tr[data-dag=ui_dark] .square")).to_have_count(len(done) + 1)
        page.screenshot(path=str(shots / "dark-dags.png"))

        page.goto(kiok.url + "/dags/ui_dark/grid")
        cells = page.get_by_test_id("grid").locator(".grow[data-task=extract] a.gc")
        expect(cells).to_have_count(len(done) + 1)
        page.get_by_test_id("grid").locator(".grow[data-task=validate] a.gc").nth(1).focus()
        page.keyboard.press("ArrowRight")  # a keyboard focus ring in the picture
        page.screenshot(path=str(shots / "dark-grid.png"))

        page.goto(kiok.url + f"/runs/{done[1]}")
        expect(page.locator("svg.graph a.node[data-state=FAILED]")).to_have_count(1)
        expect(page.locator("table.jobs tbody tr")).to_have_count(6)
        page.screenshot(path=str(shots / "dark-run.png"))

        page.goto(kiok.url + f"/runs/{holding}?tab=timeline")
        timeline = page.get_by_test_id("timeline")
        expect(timeline.locator("a.bar[data-task=enrich][data-state=RUNNING]")).to_have_count(1)
        page.screenshot(path=str(shots / "dark-timeline.png"))

        page.goto(kiok.url + f"/runs/{done[0]}/tasks/extract")
        expect(page.get_by_test_id("log-status")).to_contain_text("Complete")
        expect(page.locator("a[href='https://example.com/api']")).to_be_visible()
        page.screenshot(path=str(shots / "dark-log.png"))

        page.goto(kiok.url + "/cluster")
        expect(page.get_by_test_id("masters").locator("tbody tr")).to_have_count(1)
        expect(page.get_by_test_id("workers").locator("tbody tr").first).to_contain_text("connected")
        page.screenshot(path=str(shots / "dark-cluster.png"))
    finally:
        context.close()
        kiok.api("POST", f"/api/v1/runs/{holding}/cancel")
    assert console.errors == []
