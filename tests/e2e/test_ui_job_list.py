"""The run page's job list (and the timeline beside it), in a real browser against a real
``kiok standalone``: why each task is in its state — cancelled before it started, killed by a
signal, skipped because an upstream failed (the timeline gives the same reason), retrying (its
error, and its retry time in UTC or local time with how long until it); and the table on a phone
(ids whole, the error column readable, the table scrolling in its box) and at 1440 px (asking
"Re-run from here" moves no column)."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kiok.testing.process import Standalone
from tests.e2e.test_ui_audit import PHONE, log_in, new_page, open_page

SLOW = """
dag: {id: rv_slow}
tasks:
  - {id: wait, script: 'sleep 60'}
  - {id: then, requires: [wait], script: 'echo then'}
"""

#: ``upload`` fails: ``report`` is skipped.
FAILS = """
dag: {id: s22_fails}
tasks:
  - {id: start, script: 'echo start'}
  - {id: upload, requires: [start], script: 'exit 3'}
  - {id: report, requires: [upload], script: 'echo never'}
"""

#: Cancelled while ``wait`` sleeps: ``wait`` is killed.
SLEEPER = """
dag: {id: s22_slow}
tasks:
  - {id: wait, script: 'sleep 60'}
  - {id: then, requires: [wait], script: 'echo then'}
"""
FLAKY = """
dag: {id: flaky}
tasks:
  - {id: wobbly, retries: 2, retry_delay: 10m, script: 'echo wobble; exit 3'}
"""
#: ``head`` fails: ``tail`` is skipped.
CHAIN = """
dag: {id: chain}
tasks:
  - {id: head, script: 'echo no; exit 1'}
  - {id: tail, requires: [head], script: 'true'}
"""


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-job-list") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
    node.start()
    for dag in (FAILS, SLEEPER, FLAKY, CHAIN):
        node.register(dag)
    yield node
    node.stop()


@pytest.fixture(scope="module")
def retrying(kiok: Standalone) -> Iterator[str]:
    """A run whose one task waits ten minutes for its second attempt."""
    run_id = kiok.trigger("flaky")
    kiok.wait_for(lambda: kiok.run(run_id)["tasks"]["wobbly"]["state"] == "RETRYING", 30, "a retry")
    yield run_id
    kiok.api("POST", f"/api/v1/runs/{run_id}/cancel")


def one_line(locator: Any) -> bool:
    """Whether the element's text is on one line (not broken inside an id or a word)."""
    lines = locator.evaluate(
        "e => { const w = document.createTreeWalker(e, NodeFilter.SHOW_TEXT); const tops = new Set(); let n;"
        " while ((n = w.nextNode())) { const r = document.createRange(); r.selectNodeContents(n);"
        " for (const b of r.getClientRects()) if (b.width > 1) tops.add(Math.round(b.top)); }"
        " return tops.size; }"
    )
    return bool(lines == 1)


def test_cancelled_task_says_it_never_started(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    kiok.register(SLOW)
    run_id = kiok.trigger("rv_slow")
    kiok.wait_for(lambda: kiok.run(run_id)["tasks"]["wait"]["state"] == "RUNNING", 60, "wait to start")
    kiok.api("POST", f"/api/v1/runs/{run_id}/cancel")
    kiok.wait_run(run_id, timeout_s=60)
    context, page, console = open_page(browser, kiok, f"/runs/{run_id}")
    then = page.locator("tr[data-task=then]")
    expect(then).to_contain_text("CANCELLED")
    expect(then).to_contain_text("cancelled before it started")
    expect(then.get_by_test_id("task-cancelled")).to_have_text("cancelled before it started")
    expect(page.locator("tr[data-task=wait]").get_by_test_id("task-cancelled")).to_have_count(0)
    page.screenshot(path=str(shots / "run_cancelled_before_start.png"))
    assert console.errors == []
    context.close()


def test_a_killed_task_shows_its_signal(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    run_id = kiok.trigger("s22_slow")
    kiok.wait_for(lambda: kiok.run(run_id)["tasks"]["wait"]["state"] == "RUNNING", 60, "wait to start")
    kiok.api("POST", f"/api/v1/runs/{run_id}/cancel")
    code = kiok.wait_run(run_id, timeout_s=60)["tasks"]["wait"]["exitCode"]
    assert isinstance(code, int) and code < 0, code
    context, page, console = open_page(browser, kiok, f"/runs/{run_id}")
    shown = f"killed by {signal.Signals(-code).name} ({code})"
    expect(page.locator("tr[data-task=wait]").get_by_test_id("task-exit")).to_have_text(shown)
    expect(page.locator("tr[data-task=then]").get_by_test_id("task-exit")).to_have_text("—")
    page.locator("table.jobs").screenshot(path=str(shots / "s22_exit_signal.png"))
    assert console.errors == []
    context.close()


def test_timeline_gives_the_job_lists_skip_reason(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    run_id = kiok.trigger("s22_fails")
    assert kiok.wait_run(run_id, timeout_s=60)["state"] == "FAILED"
    context, page, console = open_page(browser, kiok, f"/runs/{run_id}")
    reason = "skipped: upstream upload failed"
    expect(page.locator("tr[data-task=report]").get_by_test_id("task-skipped")).to_have_text(reason)
    page.get_by_role("tab", name="Timeline").click()
    note = page.get_by_test_id("timeline-not-started")
    expect(note).to_have_text(f"report {reason}.")
    page.screenshot(path=str(shots / "s22_timeline_skipped.png"))
    assert console.errors == []
    context.close()


def test_a_retrying_task_shows_its_error_and_its_retry(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    run_id = kiok.trigger("flaky")
    kiok.wait_for(lambda: kiok.run(run_id)["tasks"]["wobbly"]["state"] == "RETRYING", 30, "a retry")
    waiting = kiok.run(run_id)["tasks"]["wobbly"]["waiting"]
    assert waiting.startswith("retry")
    context, page, console = new_page(browser)
    log_in(page, kiok, f"/runs/{run_id}")
    row = page.locator("tr[data-task=wobbly]")
    expect(row.locator(".err-text")).to_have_text("exit code 3")
    expect(row.get_by_test_id("task-waiting")).to_contain_text("retry (attempt 2) at ")
    page.screenshot(path=str(shots / "s23-retrying.png"))
    kiok.api("POST", f"/api/v1/runs/{run_id}/cancel")
    context.close()
    assert console.errors == []


def test_a_retry_time_follows_the_time_zone_switch(
    kiok: Standalone, retrying: str, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    task = kiok.run(retrying)["tasks"]["wobbly"]
    at = datetime.fromisoformat(task["retryAt"].replace("Z", "+00:00")).astimezone(UTC)
    context, page, console = new_page(browser, timezone_id="Asia/Tokyo")
    log_in(page, kiok, f"/runs/{retrying}")
    waiting = page.locator("tr[data-task=wobbly]").get_by_test_id("task-waiting")
    utc = at.strftime("%Y-%m-%d %H:%M:%S UTC")
    expect(waiting).to_have_text(re.compile(rf"^retry \(attempt 2\) at {utc} \(in (9|10) m \d\d s\)$"))
    page.screenshot(path=str(shots / "s23b-retry-utc.png"))
    page.get_by_role("group", name="Times shown in").get_by_role("button", name="Local").click()
    local = at.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M:%S")
    pattern = rf"^retry \(attempt 2\) at {local} (GMT\+9|JST) \(in (9|10) m \d\d s\)$"
    expect(waiting).to_have_text(re.compile(pattern))
    page.screenshot(path=str(shots / "s23b-retry-local.png"))
    context.close()
    assert console.errors == []


def test_jobs_table_keeps_ids_whole_and_scrolls_in_its_box(
    kiok: Standalone, retrying: str, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    context, page, console = new_page(browser, viewport=PHONE)
    log_in(page, kiok, f"/runs/{retrying}")
    row = page.locator("tr[data-task=wobbly]")
    expect(row.get_by_test_id("task-waiting")).to_be_visible()
    row.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "s23b-jobs-390.png"), full_page=True)
    worker = row.locator("td").nth(3)
    assert one_line(worker), worker.bounding_box()
    assert one_line(row.locator(".err-text")), row.locator(".err-text").bounding_box()
    why = row.locator("td").nth(7).bounding_box()
    assert why is not None and why["width"] >= 200, why
    table = page.locator("table.jobs")
    assert table.evaluate("t => t.scrollWidth > t.clientWidth + 50")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    table.evaluate("t => { t.scrollLeft = t.scrollWidth; }")
    table.screenshot(path=str(shots / "s23b-jobs-390-scrolled.png"))
    context.close()
    assert console.errors == []

    # At 1440, asking "Re-run from here" moves no column.
    run_id = kiok.trigger("chain")
    assert kiok.wait_run(run_id, timeout_s=60)["state"] == "FAILED"
    context, page, console = new_page(browser, viewport={"width": 1440, "height": 900})
    log_in(page, kiok, f"/runs/{run_id}")
    heads = page.locator("table.jobs thead th")
    expect(page.get_by_role("button", name="Re-run from head")).to_be_visible()
    worker = page.locator("tr[data-task=head] td").nth(3)
    assert one_line(worker), worker.bounding_box()
    before = [heads.nth(i).bounding_box() for i in range(heads.count())]
    page.get_by_role("button", name="Re-run from head").click()
    confirm = page.get_by_role("group", name="Confirm re-run from head")
    expect(confirm.get_by_role("button", name="Yes, re-run")).to_be_focused()
    page.screenshot(path=str(shots / "s23b-rerun-from-1440.png"))
    after = [heads.nth(i).bounding_box() for i in range(heads.count())]
    assert before == after
    page.keyboard.press("Escape")
    expect(confirm).to_have_count(0)
    expect(page.get_by_role("button", name="Re-run from head")).to_be_focused()
    # At 390, the table scrolled to that button: the confirm below it is in view.
    page.set_viewport_size(PHONE)
    page.get_by_role("button", name="Re-run from head").click()
    yes = confirm.get_by_role("button", name="Yes, re-run")
    expect(yes).to_be_focused()
    yes.scroll_into_view_if_needed()
    box = yes.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    page.screenshot(path=str(shots / "s23b-rerun-from-390.png"))
    context.close()
    assert console.errors == []
