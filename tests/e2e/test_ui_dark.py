"""The UI's colours in a real browser against a real ``kiok standalone``: the main views in
the dark theme (the browser's ``prefers-color-scheme: dark``), each drawn with its data
(``UI_SCREENSHOTS=1`` writes ``docs/ui/dark-*.png``, linked from docs/ui.md); and, in the light
and the dark theme, the state badges, the last-run squares and the primary buttons readable
(WCAG contrast)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.e2e.test_ui_audit import log_in, new_page
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


@pytest.fixture
def kiok(shared_kiok: Standalone) -> Standalone:
    """The module's standalone, by the name the contrast test takes it."""
    return shared_kiok


STATES = ("success", "failed", "running", "queued", "pending", "retrying", "skipped", "cancelled")


def _contrast(fg: str, bg: str) -> float:
    """WCAG contrast of two computed ``rgb(r, g, b)`` colours."""

    def luminance(css: str) -> float:
        channels = [int(v) / 255 for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_state_colours_and_primary_buttons_read_well(kiok: Standalone, browser: Any, scheme: str) -> None:
    """Found by the UI review, measured: SKIPPED badges at 2.95:1, SUCCESS 3.85:1, white glyphs
    on the dark theme's last-run squares at 2.0-2.8:1, dark primary buttons at 3.67:1."""
    context, page, console = new_page(browser)
    page.emulate_media(color_scheme=scheme)
    log_in(page, kiok, "/dags")
    page.evaluate(
        """states => { const box = document.createElement("div"); box.id = "probe";
        for (const s of states) box.insertAdjacentHTML("beforeend", `<span class="badge st-${s}"
          data-s="${s}">${s}</span><span class="square st-${s}" data-s="${s}">x</span>`);
        document.querySelector("main").append(box); }""",
        list(STATES),
    )
    colours = page.evaluate(
        """() => [...document.querySelectorAll("#probe > *")].map(el => [el.className, el.dataset.s,
          getComputedStyle(el).color, getComputedStyle(el).backgroundColor])"""
    )
    for kind, state, fg, bg in colours:
        least = 4.5 if "badge" in kind else 3.0  # a badge is small text; a square's glyph an icon
        assert _contrast(fg, bg) >= least, (scheme, kind, state, fg, bg, round(_contrast(fg, bg), 2))
    button = page.get_by_role("link", name="Register DAG").or_(
        page.get_by_role("button", name="Register DAG")
    )
    fg, bg = button.first.evaluate("el => [getComputedStyle(el).color, getComputedStyle(el).backgroundColor]")
    assert _contrast(fg, bg) >= 4.5, (scheme, fg, bg)
    context.close()
    assert console.errors == []
