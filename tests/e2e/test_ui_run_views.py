"""The run view's tabs and actions in a real browser against a real ``kiok standalone``: the
timeline of a run while it goes, and of a re-run run (its bars filling the plot; on a phone its
names staying put while the plot scrolls); why a run and a task wait; the Source tab, with its
version's own registration time (in UTC or local time); Re-run failed and Re-run from here,
asked first (Escape keeps the run as it is) and offered only where useful (not behind a failed
or skipped upstream; Re-run cancelled for a run with only a cancelled task), and Cancel run
confirmed by keyboard; the graph laid out in a worker (and refused when too large)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.e2e.conftest import TIMEOUT_MS
from tests.e2e.test_ui_audit import PHONE, log_in, new_page
from tests.e2e.test_ui_grid_cluster import open_page

DESKTOP = {"width": 1366, "height": 768}
#: ``head`` fails: ``middle`` and ``tail`` are skipped, and only re-running ``head`` helps.
CHAIN = """
dag: {id: chain}
tasks:
  - {id: head, script: 'exit 1'}
  - {id: middle, requires: [head], script: 'true'}
  - {id: tail, requires: [middle], script: 'true'}
  - {id: cleanup, requires: [head], trigger_rule: all_done, script: 'true'}
"""
#: A run of it with its task cancelled has nothing failed to re-run.
NAP = """
dag: {id: slow}
tasks:
  - {id: nap, script: 'sleep 60'}
"""
#: Re-run a while after its run: the timeline spans the re-run.
STEPS = """
dag: {id: steps}
tasks:
  - {id: one, script: 'sleep 1'}
  - {id: two, requires: [one], script: 'sleep 1'}
"""
#: A run of the second version: the Source tab gives that version's registration time.
SOURCE_V1 = """
dag: {id: s24_src}
tasks:
  - {id: one, script: 'echo one'}
"""
SOURCE_V2 = """
dag: {id: s24_src}
tasks:
  - {id: one, script: 'echo uno'}
"""


def slow(marker: Path) -> str:
    """``crunch`` runs until ``marker`` exists (at most 2 minutes): what the test looks at while
    it runs (its growing bar, the second run waiting behind it) cannot end under it."""
    return f"""
# only-in-the-source: this comment is not part of the compiled spec
dag: {{id: ui_tl, description: a quick step then a slow one, max_active_runs: 1}}
tasks:
  - {{id: prepare, script: 'echo preparing; sleep 1'}}
  - id: crunch
    requires: [prepare]
    script: 'for i in $(seq 1 600); do echo "crunch $i"; test -e {marker} && break; sleep 0.2; done'
  - {{id: publish, requires: [crunch], script: 'echo published'}}
"""


def flaky(marker: Path) -> str:
    return f"""
dag: {{id: ui_rerun, description: fails until a marker file exists}}
tasks:
  - {{id: fetch, script: 'echo fetched'}}
  - {{id: check, requires: [fetch], script: 'test -e {marker} || {{ echo "no marker" >&2; exit 3; }}'}}
  - {{id: report, requires: [check], script: 'echo reported'}}
"""


def wide(dag_id: str, tasks: int, chains: int) -> str:
    lines = [f"dag: {{id: {dag_id}, max_active_runs: 1}}", "tasks:"]
    for i in range(tasks):
        requires = f", requires: [n{i - chains:04d}]" if i >= chains else ""
        lines.append(f"  - {{id: n{i:04d}{requires}, script: 'true'}}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-run") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
    node.start()
    for dag in (CHAIN, NAP, STEPS):
        node.register(dag)
    yield node
    node.stop()


def test_timeline_waiting_reasons_and_source(
    kiok: Standalone, browser: Any, shots: Path, task_tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    marker = task_tmp_path / "crunched"
    kiok.register(slow(marker))
    first = kiok.trigger("ui_tl")
    second = kiok.trigger("ui_tl")  # waits: max_active_runs is 1
    context, page, console = open_page(browser, kiok, "admin", ADMIN_PASSWORD, f"/runs/{first}")

    # Why a task waits, in the job list, while its upstream runs.
    publish = page.locator("tr[data-task=publish]")
    expect(publish.get_by_test_id("task-waiting")).to_contain_text("crunch")

    # The timeline while the run goes: the running task's bar grows with time.
    page.get_by_role("tab", name="Timeline").click()
    expect(page).to_have_url(kiok.url + f"/runs/{first}?tab=timeline")
    timeline = page.get_by_test_id("timeline")
    expect(timeline.locator("a.bar[data-task=prepare]")).to_have_attribute("data-state", "SUCCESS")
    running = timeline.locator("a.bar[data-task=crunch][data-state=RUNNING] rect")
    expect(running).to_have_count(1)
    width = float(running.get_attribute("width") or 0)
    deadline = time.monotonic() + 10
    while float(running.get_attribute("width") or 0) <= width + 5 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert float(running.get_attribute("width") or 0) > width + 5, "the running bar did not grow"
    expect(timeline.locator(".tick text").first).to_have_text("0")
    expect(timeline).to_contain_text("not started")
    page.screenshot(path=str(shots / "timeline.png"))

    # The second run waits for the first: the header says why.
    page.goto(kiok.url + f"/runs/{second}")
    expect(page.get_by_test_id("run-waiting")).to_contain_text("max_active_runs")

    # Source: the file as registered (with its comment), then the compiled spec.
    page.get_by_role("tab", name="Source").click()
    expect(page.get_by_test_id("source-original")).to_contain_text("only-in-the-source")
    expect(page.get_by_test_id("source-spec")).to_contain_text('"id": "crunch"')
    expect(page.get_by_test_id("source-spec")).not_to_contain_text("only-in-the-source")
    page.screenshot(path=str(shots / "source.png"))
    marker.touch()
    kiok.api("POST", f"/api/v1/runs/{second}/cancel")
    kiok.wait_run(first, timeout_s=60)
    kiok.wait_run(second, timeout_s=60)
    context.close()
    assert console.errors == []


def test_rerun_failed_then_from_a_task(
    kiok: Standalone, browser: Any, shots: Path, task_tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    marker = task_tmp_path / "ok"
    kiok.register(flaky(marker))
    run_id = kiok.trigger("ui_rerun")
    assert kiok.wait_run(run_id, timeout_s=60)["state"] == "FAILED"
    context, page, console = open_page(browser, kiok, "admin", ADMIN_PASSWORD, f"/runs/{run_id}")
    expect(page.get_by_test_id("run-state")).to_contain_text("FAILED")
    expect(page.locator("tr[data-task=report]")).to_contain_text("SKIPPED")
    expect(page.locator("tr[data-task=check]")).to_contain_text("exit")
    page.screenshot(path=str(shots / "rerun.png"))

    marker.touch()
    page.get_by_role("button", name="Re-run failed").click()  # asks first
    page.get_by_role("group", name="Confirm re-run").get_by_role("button", name="Yes, re-run").click()
    expect(page.get_by_test_id("run-state")).to_contain_text("SUCCESS", timeout=60_000)
    expect(page.locator("tr[data-task=check]")).to_contain_text("SUCCESS")
    expect(page.locator("tr[data-task=report]")).to_contain_text("SUCCESS")
    run = kiok.run(run_id)
    assert run["tasks"]["fetch"]["attempt"] == 1  # the successful upstream was kept
    assert run["tasks"]["check"]["attempt"] == 2
    # The header times the re-run, not the span since the run's first start.
    expect(page.get_by_test_id("run-rerun")).to_contain_text("by admin")
    expect(page.locator("dt", has_text="Duration (last re-run)")).to_be_visible()
    expect(page.get_by_test_id("run-duration")).not_to_have_text("waiting")

    # Re-run from a chosen task: it and its downstream run again, upstream is kept.
    page.get_by_role("button", name="Re-run from check").click()
    confirm = page.get_by_role("group", name="Confirm re-run from check")
    confirm.get_by_role("button", name="Yes, re-run").click()
    # The confirm goes once the re-run's POST has answered: only then is the run's SUCCESS
    # below the re-run's, not the one before it.
    expect(confirm).to_have_count(0)
    expect(page.get_by_test_id("run-state")).to_contain_text("SUCCESS", timeout=60_000)
    run = kiok.wait_run(run_id, timeout_s=60)
    assert run["tasks"]["check"]["attempt"] == 3
    assert run["tasks"]["report"]["attempt"] == 2
    assert run["tasks"]["fetch"]["attempt"] == 1
    context.close()
    assert console.errors == []


def test_graph_in_a_worker_and_too_large(kiok: Standalone, browser: Any) -> None:
    from playwright.sync_api import expect

    kiok.register(wide("ui_wide", 300, 12))
    kiok.register(wide("ui_huge", 1001, 20))
    wide_run = kiok.trigger("ui_wide")
    huge_run = kiok.trigger("ui_huge")
    context, page, console = open_page(browser, kiok, "admin", ADMIN_PASSWORD, f"/runs/{wide_run}")
    graph = page.get_by_test_id("graph")
    expect(graph).to_have_attribute("data-layout", "worker")
    expect(graph.locator("a.node")).to_have_count(300)
    expect(graph.locator("a.node[data-task=n0299]")).to_have_attribute(
        "href", f"/runs/{wide_run}/tasks/n0299"
    )

    page.goto(kiok.url + f"/runs/{huge_run}")
    state = page.get_by_test_id("graph-state")
    expect(state).to_have_attribute("data-status", "too-large", timeout=TIMEOUT_MS)
    expect(state).to_contain_text("Too large to draw here")
    expect(state.get_by_role("link", name="grid")).to_have_attribute("href", "/dags/ui_huge/grid")
    expect(page.locator("table.jobs tbody tr")).to_have_count(1001)
    page.get_by_label("Filter tasks").fill("n100")
    expect(page.locator("table.jobs tbody tr")).to_have_count(1)  # n1000 (n0100 does not match)
    for run_id in (wide_run, huge_run):
        kiok.api("POST", f"/api/v1/runs/{run_id}/cancel")
    context.close()
    assert console.errors == []


def test_re_runs_ask_first_and_are_offered_where_useful(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    run_id = kiok.trigger("chain")
    assert kiok.wait_run(run_id, timeout_s=60)["state"] == "FAILED"
    context, page, console = new_page(browser)
    log_in(page, kiok, f"/runs/{run_id}")
    expect(page.locator("tr[data-task=middle]")).to_contain_text("SKIPPED")
    # From head (no upstream) and cleanup (all_done): yes. From middle or tail: head failed or
    # middle was skipped, neither re-run, so they would be skipped again at once.
    expect(page.get_by_role("button", name="Re-run from head")).to_be_visible()
    expect(page.get_by_role("button", name="Re-run from cleanup")).to_be_visible()
    for task, upstream in (("middle", "head failed"), ("tail", "middle skipped")):
        row = page.locator(f"tr[data-task={task}]")
        expect(row.get_by_role("button", name=f"Re-run from {task}")).to_have_count(0)
        expect(row.get_by_test_id("no-rerun")).to_have_text(f"blocked: {upstream}")

    # Re-run failed asks first; Escape keeps the run as it is and gives the focus back.
    rerun = page.get_by_role("button", name="Re-run failed")
    rerun.click()
    confirm = page.get_by_role("group", name="Confirm re-run")
    expect(confirm).to_contain_text("Re-run the 3 tasks that did not succeed (1 failed, 2 skipped)")
    expect(confirm.get_by_role("button", name="Yes, re-run")).to_be_focused()
    page.screenshot(path=str(shots / "s23-rerun-confirm.png"))
    page.keyboard.press("Escape")
    expect(confirm).to_have_count(0)
    expect(rerun).to_be_focused()
    # Re-run from head asks too; Keep as is does nothing.
    page.get_by_role("button", name="Re-run from head").click()
    row_confirm = page.get_by_role("group", name="Confirm re-run from head")
    expect(row_confirm).to_contain_text("Re-run head and everything downstream of it?")
    row_confirm.get_by_role("button", name="Keep as is").click()
    expect(row_confirm).to_have_count(0)
    assert kiok.run(run_id).get("reruns", 0) in (0, None)
    # Confirmed, it re-runs.
    rerun.click()
    page.get_by_role("button", name="Yes, re-run").click()
    kiok.wait_for(lambda: (kiok.run(run_id).get("reruns") or 0) == 1, 30, "the re-run")
    context.close()
    assert console.errors == []

    # A run with only a cancelled task: not "Re-run failed".
    slow = kiok.trigger("slow")
    kiok.wait_for(lambda: kiok.run(slow)["tasks"].get("nap", {}).get("state") == "RUNNING", 30, "the nap")
    context, page, console = new_page(browser)
    log_in(page, kiok, f"/runs/{slow}")
    # Cancel run: the confirm takes the focus, Escape closes it, the focus goes back.
    cancel = page.get_by_role("button", name="Cancel run")
    cancel.click()
    expect(page.get_by_role("button", name="Yes, cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("group", name="Confirm cancel")).to_have_count(0)
    expect(cancel).to_be_focused()
    assert kiok.run(slow)["state"] == "RUNNING"
    cancel.click()
    expect(page.get_by_role("button", name="Yes, cancel")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("run-state")).to_contain_text("CANCELLED")
    expect(page.get_by_role("button", name="Re-run cancelled")).to_be_visible()
    expect(page.get_by_role("button", name="Re-run failed")).to_have_count(0)
    page.screenshot(path=str(shots / "s23-rerun-cancelled.png"))
    context.close()
    assert console.errors == []


def test_timeline_after_a_re_run_and_on_a_phone(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    run_id = kiok.trigger("steps")
    kiok.wait_run(run_id, timeout_s=60)
    time.sleep(4)
    assert kiok.api("POST", f"/api/v1/runs/{run_id}/rerun", json={"onlyFailed": False}).is_success
    kiok.wait_run(run_id, timeout_s=60)

    context, page, console = new_page(browser)
    log_in(page, kiok, f"/runs/{run_id}?tab=timeline")
    timeline = page.get_by_test_id("timeline")
    expect(timeline.locator("a.bar")).to_have_count(2)
    # The bars (both of the re-run) span most of the plot, not its last few percent.
    svg = timeline.locator("svg.timeline").bounding_box()
    rects = [timeline.locator(f"a.bar[data-task={t}] rect").bounding_box() for t in ("one", "two")]
    assert svg is not None and all(rects)
    left = min(r["x"] for r in rects if r)
    right = max(r["x"] + r["width"] for r in rects if r)
    plot = svg["width"] - 200 - 16
    assert (right - left) / plot > 0.8, f"the bars take {(right - left) / plot:.0%} of the plot"
    expect(page.get_by_test_id("timeline-origin")).to_contain_text("was re-run")
    expect(page.get_by_test_id("timeline-scroll-hint")).to_have_count(0)
    page.screenshot(path=str(shots / "s23-timeline-rerun.png"))
    context.close()
    assert console.errors == []

    # A phone: a narrow name column, a hint, and the names stay at the left while the plot scrolls.
    context, page, console = new_page(browser, viewport=PHONE)
    log_in(page, kiok, f"/runs/{run_id}?tab=timeline")
    timeline = page.get_by_test_id("timeline")
    expect(page.get_by_test_id("timeline-scroll-hint")).to_be_visible()
    names = page.get_by_test_id("timeline-names")
    box = names.bounding_box()
    wrap = timeline.bounding_box()
    assert box is not None and wrap is not None and box["width"] <= 110
    svg = timeline.locator("svg.timeline").bounding_box()
    assert svg is not None and svg["width"] - box["width"] - 16 >= 300, "the plot is too narrow"
    timeline.evaluate("(el) => { el.scrollLeft = 200; }")
    page.wait_for_timeout(100)
    moved = names.bounding_box()
    assert moved is not None and abs(moved["x"] - box["x"]) < 2, (box, moved)
    expect(names.locator("text").first).to_have_text("one")
    page.screenshot(path=str(shots / "s23-timeline-phone.png"))
    context.close()
    assert console.errors == []


def test_the_source_tab_shows_the_versions_time_as_every_other_time(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    """Before: "registered2026-12-07T08:06:40.123Z", the DAG's updatedAt (moved by a pause)."""
    from playwright.sync_api import expect

    kiok.register(SOURCE_V1)
    time.sleep(1.1)  # the times are shown to the second
    kiok.register(SOURCE_V2)
    run_id = kiok.trigger("s24_src")
    kiok.wait_run(run_id, timeout_s=60)
    time.sleep(1.1)
    assert kiok.api("POST", "/api/v1/dags/s24_src/pause").status_code == 200
    assert kiok.api("POST", "/api/v1/dags/s24_src/unpause").status_code == 200
    versions = kiok.api("GET", "/api/v1/dags/s24_src/versions").json()["versions"]
    registered = next(v["registeredAt"] for v in versions if v["version"] == 2)
    dag = kiok.api("GET", "/api/v1/dags/s24_src").json()
    assert dag["version"] == 2
    assert dag["updatedAt"] != registered and dag["registeredAt"] != registered
    at = datetime.fromisoformat(registered.replace("Z", "+00:00")).astimezone(UTC)

    context, page, console = new_page(browser, viewport=DESKTOP, timezone_id="Asia/Tokyo")
    log_in(page, kiok, f"/runs/{run_id}?tab=source")
    line = page.get_by_test_id("source").locator("p").first
    utc = at.strftime("%Y-%m-%d %H:%M:%S UTC")
    now = "the DAG as registered now, which may be newer than this run."
    expect(line).to_have_text(f"DAG s24_src version 2, registered {utc}: {now}")
    page.screenshot(path=str(shots / "s24-source-utc.png"))
    # The DAG's page shows the same time for the same version.
    page.goto(kiok.url + "/dags/s24_src")
    expect(page.get_by_test_id("dag-version")).to_have_text(f"v2, {utc}")
    page.go_back()
    page.get_by_role("group", name="Times shown in").get_by_role("button", name="Local").click()
    local = at.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M:%S")
    expect(line).to_have_text(re.compile(rf"^DAG s24_src version 2, registered {local} (GMT\+9|JST): "))
    page.screenshot(path=str(shots / "s24-source-local.png"))
    context.close()
    assert console.errors == []
