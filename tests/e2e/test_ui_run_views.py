"""The run view's tabs and actions in a real browser against a real ``kiok standalone``: the
timeline of a run while it goes, why a run and a task wait, the Source tab, Re-run failed
and Re-run from here, the graph laid out in a worker (and refused when too large)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.e2e.conftest import TIMEOUT_MS
from tests.e2e.test_ui_grid_cluster import open_page


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
