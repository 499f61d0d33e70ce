"""A running task's live log, in a real browser against a real ``kiok standalone``: scrolled
up, it says it is not following and offers Jump to end, which follows the log again; a
moment the master cannot be reached does not stop it following."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import Standalone
from tests.e2e.test_ui_audit import open_page

CHATTY = """
dag: {id: rv_chatty}
tasks:
  - {id: chatter, script: 'for i in $(seq 1 300); do echo "line $i"; done; sleep 60'}
"""

TICKER = """
dag: {id: rv_ticker}
tasks:
  - {id: ticker, script: 'seq 1 200; for i in $(seq 1 600); do echo "tick $i"; sleep 0.1; done'}
"""


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-live-log") / "kiok")
    node.start()
    yield node
    node.stop()


def test_scrolled_up_log_says_it_is_not_following(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    kiok.register(CHATTY)
    run_id = kiok.trigger("rv_chatty")
    context, page, console = open_page(browser, kiok, f"/runs/{run_id}/tasks/chatter")
    status = page.get_by_test_id("log-status")
    expect(status).to_contain_text("300 lines", timeout=60_000)
    log = page.get_by_test_id("log")
    expect(status).to_contain_text("Live")
    expect(status).not_to_contain_text("not following")
    log.evaluate("el => { el.scrollTop = 0; }")
    expect(status).to_contain_text("not following")
    jump = page.get_by_role("button", name="Jump to end")
    expect(jump).to_be_visible()
    page.screenshot(path=str(shots / "log_not_following.png"))
    jump.click()
    expect(status).not_to_contain_text("not following")
    expect(jump).to_have_count(0)
    assert log.evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight") < 8
    kiok.api("POST", f"/api/v1/runs/{run_id}/cancel")
    kiok.wait_run(run_id, timeout_s=60)
    assert console.errors == []
    context.close()


def test_a_log_that_could_not_be_read_for_a_while_still_follows_the_end(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    """The UI probe of session 29: while the log could not be read, the error box above it
    made it shorter, and the first read after took the view, now short of its end, for one
    the user had scrolled up: "Live, not following (scrolled up)", stuck at the old line."""
    from playwright.sync_api import expect

    kiok.register(TICKER)
    run_id = kiok.trigger("rv_ticker")
    context, page, _console = open_page(browser, kiok, f"/runs/{run_id}/tasks/ticker")
    status = page.get_by_test_id("log-status")
    log = page.get_by_test_id("log")
    expect(log).to_contain_text("tick 5", timeout=60_000)
    expect(status).to_contain_text("Live")
    page.route("**/api/v1/runs/*/tasks/*/log*", lambda route: route.abort("connectionrefused"))
    expect(page.get_by_text("cannot reach the master")).to_be_visible(timeout=30_000)
    lines = (
        "() => Number(document.querySelector('[data-testid=log-status]').textContent"
        ".match(/([0-9,]+) lines/)[1].replaceAll(',', ''))"
    )
    seen = page.evaluate(lines)
    page.unroute("**/api/v1/runs/*/tasks/*/log*")
    expect(page.get_by_text("cannot reach the master")).to_have_count(0, timeout=30_000)
    page.wait_for_function(f"() => ({lines})() > {seen} + 20", timeout=30_000)
    page.screenshot(path=str(shots / "log_follows_after_an_outage.png"))
    expect(status).not_to_contain_text("not following")
    expect(page.get_by_role("button", name="Jump to end")).to_have_count(0)
    assert log.evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight") < 8
    kiok.api("POST", f"/api/v1/runs/{run_id}/cancel")
    kiok.wait_run(run_id, timeout_s=60)
    context.close()


def test_a_search_match_or_a_shorter_box_does_not_pass_for_following(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    """The UI re-probe of session 29: with a search match selected the view stayed at it
    while the status said "Live" and offered no Jump to end; a following log made shorter (a
    smaller window) hid its last lines until the next one came."""
    from playwright.sync_api import expect

    kiok.register(TICKER.replace("rv_ticker", "rv_ticker2"))
    run_id = kiok.trigger("rv_ticker2")
    context, page, _console = open_page(browser, kiok, f"/runs/{run_id}/tasks/ticker")
    status, log = page.get_by_test_id("log-status"), page.get_by_test_id("log")
    expect(log).to_contain_text("tick 5", timeout=60_000)
    page.set_viewport_size({"width": 1280, "height": 500})  # shorter while following
    page.wait_for_function(
        "() => { const el = document.querySelector('[data-testid=log]');"
        " return el.scrollHeight - el.scrollTop - el.clientHeight < 8; }"
    )
    expect(status).not_to_contain_text("not following")
    search = page.get_by_label("Search the log")
    search.fill("tick 5")
    search.press("Enter")
    expect(status).to_contain_text("Live, not following (at a search match)")
    jump = page.get_by_role("button", name="Jump to end")
    expect(jump).to_be_visible()
    page.screenshot(path=str(shots / "log_at_a_search_match.png"))
    jump.click()
    expect(status).not_to_contain_text("not following")
    kiok.api("POST", f"/api/v1/runs/{run_id}/cancel")
    kiok.wait_run(run_id, timeout_s=60)
    context.close()


def test_the_header_follows_a_task_that_starts_after_the_page_opened(kiok: Standalone, browser: Any) -> None:
    """The UI re-probe of session 29: the header was read once when the page opened, so a
    task then waiting for its upstream kept "PENDING" and "Not started yet" while its output
    streamed below."""
    from playwright.sync_api import expect

    kiok.register(
        "dag: {id: rv_waits}\ntasks:\n  - {id: up, script: 'sleep 2'}\n"
        "  - {id: down, requires: [up],"
        " script: 'for i in $(seq 1 100); do echo \"out $i\"; sleep 0.2; done'}\n"
    )
    run_id = kiok.trigger("rv_waits")
    context, page, _console = open_page(browser, kiok, f"/runs/{run_id}/tasks/down")
    expect(page.get_by_text("Not started yet")).to_be_visible()
    expect(page.get_by_test_id("log")).to_contain_text("out 2", timeout=60_000)
    expect(page.locator(".page-head .badge")).to_have_attribute("data-state", "RUNNING")
    expect(page.get_by_text("Not started yet")).to_have_count(0)
    kiok.api("POST", f"/api/v1/runs/{run_id}/cancel")
    kiok.wait_run(run_id, timeout_s=60)
    context.close()
