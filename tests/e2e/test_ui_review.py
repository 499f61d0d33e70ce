"""Fixes from the second UI review, in a real browser against a real ``kiok standalone``: long
ids never make a page wider than the window, the DAG's version with when it was registered
(not moved by a pause), the Register page on a phone, a readable first view of a 200-task
fan-out (Fit still shows it all), the Run dialog's focus, an unknown DAG's error alone, why a
task cancelled before it started has no times, a scrolled-up log that says it is not
following, and Run disabled on a paused DAG."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import Standalone
from tests.e2e.test_ui_audit import PHONE, WIDE, inside, open_page

DESKTOP = {"width": 1280, "height": 800}
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

PARAMS = """
dag:
  id: rv_params
  params:
    region: {default: eu, enum: [eu, us]}
    limit: {type: integer, default: 10}
tasks:
  - {id: one, script: 'echo one'}
"""

PLAIN = """
dag: {id: rv_plain}
tasks:
  - {id: one, script: 'echo one'}
"""

SLOW = """
dag: {id: rv_slow}
tasks:
  - {id: wait, script: 'sleep 60'}
  - {id: then, requires: [wait], script: 'echo then'}
"""

CHATTY = """
dag: {id: rv_chatty}
tasks:
  - {id: chatter, script: 'for i in $(seq 1 300); do echo "line $i"; done; sleep 60'}
"""


def fan_out() -> str:
    lines = ["dag: {id: rv_fan}", "tasks:", "  - {id: start, script: 'true'}"]
    lines += [f"  - {{id: shard_{i:03d}, requires: [start], script: 'true'}}" for i in range(FAN)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-review") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
    node.start()
    yield node
    node.stop()


def no_sideways_scroll(page: Any, where: str) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert widths[0] <= widths[1], (
        f"{where}: the page is wider than the window ({widths[0]} > {widths[1]}): {page.evaluate(WIDE)}"
    )


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

        page.goto(kiok.url + f"/runs/{run_id}/tasks/{LONG_TASK}")
        expect(page.get_by_test_id("log-status")).to_contain_text("Complete")
        no_sideways_scroll(page, f"the log page at {name}")
        assert console.errors == []
        context.close()


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


def test_run_dialog_focuses_the_first_field(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    kiok.register(PARAMS)
    kiok.register(PLAIN)
    context, page, console = open_page(browser, kiok, "/dags/rv_params")
    page.get_by_role("button", name="▶ Run").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("region")).to_be_focused()
    page.screenshot(path=str(shots / "trigger_focus.png"))
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)

    page.goto(kiok.url + "/dags/rv_plain")
    page.get_by_role("button", name="▶ Run").click()
    expect(dialog.get_by_text("This DAG takes no params.")).to_be_visible()
    expect(dialog.get_by_role("button", name="Start run")).to_be_focused()
    page.keyboard.press("Enter")  # starts the run, not closes the dialog
    page.wait_for_url("**/runs/rv_plain-*")
    assert console.errors == []
    context.close()


def test_unknown_dag_shows_only_the_error(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    context, page, console = open_page(browser, kiok, "/dags/rv_nope")
    expect(page.locator(".error")).to_contain_text("rv_nope")
    page.wait_for_load_state("networkidle")
    expect(page.get_by_role("link", name="▦ Grid")).to_have_count(0)
    expect(page.get_by_role("button", name="▶ Run")).to_have_count(0)
    expect(page.get_by_role("heading", name="Runs")).to_have_count(0)
    expect(page.get_by_role("switch")).to_have_count(0)
    page.screenshot(path=str(shots / "dag_unknown.png"))
    console.errors.clear()  # the 404s
    context.close()


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


def test_run_is_disabled_on_a_paused_dag(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    kiok.register(PLAIN.replace("rv_plain", "rv_paused"))
    assert kiok.api("POST", "/api/v1/dags/rv_paused/pause").status_code == 200
    context, page, console = open_page(browser, kiok, "/dags?q=rv_paused")
    row = page.locator("tr[data-dag=rv_paused]")
    run = row.get_by_role("button", name="Run rv_paused")
    expect(run).to_be_disabled()
    expect(run).to_have_attribute("title", "The DAG is paused: unpause it first")
    expect(row.get_by_test_id("run-paused-note")).to_be_visible()
    page.screenshot(path=str(shots / "dags_paused_run.png"))

    page.goto(kiok.url + "/dags/rv_paused")
    run = page.get_by_role("button", name="▶ Run")
    expect(run).to_be_disabled()
    expect(page.get_by_test_id("run-paused-note")).to_have_text("Paused: unpause it to run")
    page.get_by_role("switch", name="rv_paused active").click(force=True)
    expect(run).to_be_enabled()
    expect(page.get_by_test_id("run-paused-note")).to_have_count(0)
    page.screenshot(path=str(shots / "dag_unpaused_run.png"))
    assert console.errors == []
    context.close()
