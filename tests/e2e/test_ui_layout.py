"""Pages that fit their window, in a real browser against a real ``kiok standalone``: the DAG
list empty (its hint spaced right) and on a phone (the next fire time on one line); DAG and
task ids of 180 characters at 1280 and 390 px (no page wider than the window, Run on screen);
the Register page on a phone; a 200-task fan-out's graph starting at a readable zoom, Fit still
showing it all; the audit log with a 184-character target; the dashboard's chart filling its
card, its labels readable and evenly spaced, the newest slice labelled (its caption saying runs
created)."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.e2e.conftest import Console
from tests.e2e.test_ui_audit import PHONE, inside, log_in, new_page, open_page
from tests.e2e.test_ui_audit import WIDE as STICKING_OUT

DESKTOP = {"width": 1280, "height": 800}
#: The wider of the two windows the chart's labels are checked in (DESKTOP is the long ids').
LAPTOP = {"width": 1366, "height": 768}
#: Where the chart must fill its card.
WIDE = {"width": 1440, "height": 900}
LONG_DAG = "long." + "d" * 175  # 180 characters
LONG_TASK = "task_" + "t" * 175
READABLE = 0.4
FAN = 200

LONG = f"""
dag: {{id: {LONG_DAG}, description: ids of 180 characters}}
tasks:
  - {{id: {LONG_TASK}, script: 'echo long'}}
  - {{id: after, requires: [{LONG_TASK}], script: 'echo after'}}
"""

#: Scheduled: the DAG list shows its next fire time.
SCHEDULED = """
dag: {id: s25_daily, schedule: '0 1 * * *'}
tasks:
  - {id: t, script: 'true'}
"""
#: 184 characters: the target of its audit records.
LONG_ID = "very_long_dag_" + "x" * 170


def fan_out() -> str:
    lines = ["dag: {id: rv_fan}", "tasks:", "  - {id: start, script: 'true'}"]
    lines += [f"  - {{id: shard_{i:03d}, requires: [start], script: 'true'}}" for i in range(FAN)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    """No DAG registered: the first test looks at the empty DAG list."""
    node = Standalone(tmp_path_factory.mktemp("ui-layout") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
    node.start()
    yield node
    node.stop()


def no_sideways_scroll(page: Any, where: str) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert widths[0] <= widths[1], (
        f"{where}: the page is wider than the window ({widths[0]} > {widths[1]}): "
        f"{page.evaluate(STICKING_OUT)}"
    )


def signed_in(
    browser: Any, kiok: Standalone, start: str, user: str = "admin", password: str = ADMIN_PASSWORD, **kw: Any
) -> tuple[Any, Any, Console]:
    """A new page (``kw`` for its context), logged in as ``user`` and sent on to ``start``."""
    context, page, console = new_page(browser, **kw)
    log_in(page, kiok, start, user, password)
    return context, page, console


# First: it needs a master with no DAG yet.
def test_the_dag_list_reads_well_empty_and_on_a_phone(kiok: Standalone, browser: Any, shots: Path) -> None:
    """Before: "or use<code>kiok dags register" with no space; on a phone the next fire time
    broke into four lines ("next 2026- / 12-08 / 01:00:00 / UTC")."""
    from playwright.sync_api import expect

    context, page, console = new_page(browser)
    log_in(page, kiok, "/dags")
    expect(page.get_by_text("No DAGs registered yet.")).to_be_visible()
    assert "or use kiok dags register my_dag.yaml" in page.locator(".card.empty").inner_text()
    context.close()

    kiok.register(SCHEDULED)
    context, page, console = new_page(browser, viewport={"width": 390, "height": 844})
    log_in(page, kiok, "/dags")
    when = page.locator("tr[data-dag=s25_daily] span.when")
    expect(when).to_contain_text("UTC")
    box = when.bounding_box()
    height = when.evaluate("el => parseFloat(getComputedStyle(el).lineHeight)")
    assert box is not None and box["height"] < 1.5 * height, (box, height)
    page.screenshot(path=str(shots / "s25-dags-phone.png"))
    context.close()
    assert console.errors == []


def test_long_ids_never_widen_the_page(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    kiok.register(LONG)
    run_id = kiok.trigger(LONG_DAG)
    kiok.wait_run(run_id, timeout_s=60)
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        context, page, console = open_page(browser, kiok, "/dags", viewport=viewport)
        screen = {"x": 0, "y": 0, "width": viewport["width"], "height": 10_000}
        row = page.locator(f"tr[data-dag='{LONG_DAG}']")
        expect(row).to_be_visible()
        page.wait_for_load_state("networkidle")
        no_sideways_scroll(page, f"/dags at {name}")
        if name == "desktop":  # on a phone the table scrolls in its own box
            run = row.get_by_role("button", name=f"Run {LONG_DAG}")
            assert inside(run.bounding_box(), screen), "the Run button is off screen"
        page.screenshot(path=str(shots / f"long_ids_dags_{name}.png"))

        page.goto(kiok.url + f"/dags/{LONG_DAG}")
        expect(page.locator(f"a[href='/runs/{run_id}']")).to_be_visible()
        page.wait_for_load_state("networkidle")
        no_sideways_scroll(page, f"the DAG page at {name}")
        if name == "desktop":
            assert inside(page.get_by_role("button", name="▶ Run").bounding_box(), screen)
        page.screenshot(path=str(shots / f"long_ids_dag_{name}.png"))

        page.goto(kiok.url + f"/runs/{run_id}")
        expect(page.locator(f"tr[data-task={LONG_TASK}]")).to_contain_text("SUCCESS")
        page.wait_for_load_state("networkidle")
        no_sideways_scroll(page, f"the run page at {name}")
        page.screenshot(path=str(shots / f"long_ids_run_{name}.png"), full_page=True)

        page.goto(kiok.url + f"/runs/{run_id}?tab=source")  # its version line names the DAG
        expect(page.get_by_test_id("source-version")).to_contain_text(LONG_DAG)
        no_sideways_scroll(page, f"the run's source tab at {name}")

        page.goto(kiok.url + f"/runs/{run_id}/tasks/{LONG_TASK}")
        expect(page.get_by_test_id("log-status")).to_contain_text("Complete")
        no_sideways_scroll(page, f"the log page at {name}")
        assert console.errors == []
        context.close()


BLOCKED = """
dag: {id: s29_blocked}
tasks:
  - {id: always_fails, script: 'echo "the reason it failed, said at some length"; exit 3'}
  - {id: downstream_of_the_failure, requires: [always_fails], script: 'true'}
"""


def test_no_page_is_wider_than_a_window_between_a_phone_and_a_desktop(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    """The UI probe of session 29: between 761 and ~1,170 px (a 1024 px laptop included) a
    finished run's jobs table (its reasons, times and "Re-run from here") and the cluster's
    workers table pushed the whole page sideways, the top bar cut short; tables scrolled in
    their own box only on a phone. Every table now scrolls in its box at any width."""
    from playwright.sync_api import expect

    kiok.register(BLOCKED)
    run_id = kiok.trigger("s29_blocked")
    kiok.wait_run(run_id, timeout_s=60)
    for width in (820, 1024, 1100):
        viewport = {"width": width, "height": 768}
        context, page, console = open_page(browser, kiok, f"/runs/{run_id}", viewport=viewport)
        expect(page.locator("tr[data-task=downstream_of_the_failure]")).to_contain_text("blocked")
        page.wait_for_load_state("networkidle")
        no_sideways_scroll(page, f"the run page at {width}")
        if width == 1024:
            page.screenshot(path=str(shots / "s29-run-1024.png"))
        if width == 820:  # a confirm row's question stays in view in the box scrolled sideways
            page.locator(".table-scroll:has(table.jobs)").evaluate(
                "el => { el.scrollLeft = el.scrollWidth; }"
            )
            page.get_by_role("button", name="Re-run from always_fails").click()
            yes = page.get_by_role("button", name="Yes, re-run")
            expect(yes).to_be_focused()
            box = page.locator("tr.confirm-row .confirm").bounding_box()  # the question and its answers
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box
            page.screenshot(path=str(shots / "s29-rerun-confirm-820.png"))
            page.keyboard.press("Escape")
        page.goto(kiok.url + "/cluster")
        expect(page.get_by_test_id("workers")).to_be_visible()
        page.wait_for_load_state("networkidle")
        no_sideways_scroll(page, f"the cluster page at {width}")
        if width == 820:
            page.screenshot(path=str(shots / "s29-cluster-820.png"))
        assert console.errors == []
        context.close()


def test_register_page_fits_a_phone(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    context, page, console = open_page(browser, kiok, "/dags/register", viewport=PHONE)
    editor = page.get_by_label("DAG document")
    expect(editor).to_be_visible()
    no_sideways_scroll(page, "/dags/register")
    screen = {"x": 0, "y": 0, "width": PHONE["width"], "height": 10_000}
    assert inside(page.locator(".editor").bounding_box(), screen), "the editor is cut off"
    assert inside(page.locator("input[type=file]").bounding_box(), screen), "the file input is cut off"
    page.get_by_role("button", name="Insert an example").click()
    expect(editor).to_have_value(re.compile("id: hello"))
    no_sideways_scroll(page, "/dags/register with the example")
    page.screenshot(path=str(shots / "register_phone.png"))
    assert console.errors == []
    context.close()


def test_big_fan_out_starts_readable_and_fits_on_demand(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    kiok.register(fan_out())
    run_id = kiok.trigger("rv_fan")
    kiok.wait_run(run_id, timeout_s=120)
    context, page, console = open_page(browser, kiok, f"/runs/{run_id}")
    graph = page.get_by_test_id("graph")
    expect(graph.locator("a.node")).to_have_count(FAN + 1)
    page.wait_for_timeout(300)
    first = float(graph.get_attribute("data-zoom") or 0)
    assert first >= READABLE, f"the first view is at {first:.0%}: unreadable"
    view = graph.locator(".graph-box").bounding_box()
    assert view is not None
    root = graph.locator("a.node[data-task=start] rect").first
    assert inside(root.bounding_box(), view), "the root is off view"
    page.screenshot(path=str(shots / "graph_fan200_first_view.png"))
    # Fit still zooms out to (nearly: not below 5 %) the whole graph.
    graph.get_by_role("button", name="Fit").click()
    expect(graph).not_to_have_attribute("data-zoom", f"{first:.3f}")
    assert float(graph.get_attribute("data-zoom") or 0) < READABLE
    view = graph.locator(".graph-box").bounding_box()  # the click may have scrolled the page
    assert view is not None
    assert inside(root.bounding_box(), view, 1), "the root is off view after Fit"
    page.screenshot(path=str(shots / "graph_fan200_fit.png"))
    assert console.errors == []
    context.close()


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


def test_the_activity_chart_fills_its_card_with_readable_labels(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    for viewport in (WIDE, PHONE):
        context, page, console = signed_in(browser, kiok, "/", viewport=viewport)
        chart = page.get_by_test_id("activity")
        expect(chart.locator("text.tick").first).to_be_visible()
        card = chart.bounding_box()
        svg = chart.locator("svg").bounding_box()
        axis = chart.locator("line.axis").bounding_box()
        assert card and svg and axis
        assert svg["width"] >= card["width"] - 40, (viewport, svg, card)  # all but the padding
        if viewport is WIDE:
            assert axis["width"] >= 0.9 * card["width"], (axis, card)
        heights = [
            box["height"] for box in (t.bounding_box() for t in chart.locator("text.tick").all()) if box
        ]
        assert heights and min(heights) >= 10, (viewport, heights)
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        chart.screenshot(path=str(shots / f"s22b-chart-{viewport['width']}.png"))
        context.close()
        assert console.errors == []


QUICK = """
dag: {id: s24_quick}
tasks:
  - {id: t, script: 'true'}
"""
#: The chart's time labels: [x, "HH:MM"], left to right.
TIME_LABELS = """() => [...document.querySelectorAll("[data-testid=activity] text.tick[text-anchor=middle]")]
  .map((t) => [Number(t.getAttribute("x")), t.textContent])"""


#: The middle of the chart's newest bar.
NEWEST_BAR = """() => { const bars = [...document.querySelectorAll("[data-testid=activity] rect.bar")];
  const b = bars[bars.length - 1];
  return Number(b.getAttribute("x")) + Number(b.getAttribute("width")) / 2; }"""


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["1366", "390"])
def test_the_chart_says_runs_created_and_its_time_labels_are_evenly_spaced(
    kiok: Standalone, browser: Any, shots: Path, viewport: dict[str, int]
) -> None:
    """Before: "runs started" (the series counts runs created), and the last label broke the
    spacing ("08:13, 08:19" with 08:17 missing at 1366)."""
    from playwright.sync_api import expect

    kiok.register(QUICK)
    for _ in range(2):
        kiok.wait_run(kiok.trigger("s24_quick"), timeout_s=60)
    series = kiok.api("GET", "/api/v1/dashboard?window=3600&buckets=30").json()["series"]
    created = sum(b["runs"] for b in series)
    context, page, console = new_page(browser, viewport=viewport)
    log_in(page, kiok, "/")
    chart = page.get_by_test_id("activity")
    expect(chart.locator("rect.bar")).to_have_count(30)
    expect(chart.locator("figcaption")).to_contain_text("runs created")
    expect(chart.locator("figcaption")).not_to_contain_text("started")
    expect(chart.locator("svg")).to_have_attribute("aria-label", re.compile(rf"^{created} runs created and "))
    busy = chart.locator("rect.bar title", has_text=re.compile(r": [1-9]\d* runs"))
    # Its span (session 27's UI review: a slice was labelled with its start cut to the minute,
    # so runs created a minute ago read as two minutes older).
    expect(busy.first).to_have_text(
        re.compile(r"^\d\d:\d\d:\d\d–\d\d:\d\d:\d\d UTC: \d+ runs created, \d+\.\d\d tasks/s$")
    )
    expect(chart.get_by_test_id("activity-zone")).to_have_text("times in UTC")

    labels = page.evaluate(TIME_LABELS)
    assert len(labels) >= 3, labels
    gaps = {round(b[0] - a[0], 1) for a, b in itertools.pairwise(labels)}
    assert max(gaps) - min(gaps) < 0.5, labels
    minutes = [int(t[:2]) * 60 + int(t[3:]) for _, t in labels]
    steps = {(b - a) % 1440 for a, b in itertools.pairwise(minutes)}
    assert len(steps) == 1, labels
    # The newest slice is labelled, with when it ends: now.
    newest = page.evaluate(NEWEST_BAR)
    assert abs(labels[-1][0] - newest) < 1.5, (labels, newest)
    ends = {
        datetime.now(UTC).strftime("%H:%M"),
        datetime.fromtimestamp(time.time() - 60, UTC).strftime("%H:%M"),
    }
    assert labels[-1][1] in ends, (labels, ends)
    chart.screenshot(path=str(shots / f"s24-chart-{viewport['width']}.png"))
    context.close()
    assert console.errors == []
