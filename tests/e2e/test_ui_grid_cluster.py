"""The grid and the cluster page in a real browser against a real ``kiok standalone``: a
200-task DAG with 20 runs renders quickly and a cell opens its task's log; the cluster page
shows the master and the worker, switches maintenance mode (with a banner on every page),
and a read-only user's attempts at actions are refused inline."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.e2e.conftest import TIMEOUT_MS, VIEWPORT, Console

TASKS = 200
RUNS = 20
CHAINS = 10
#: Fails in every run whose id ends in 0 or 5, so the grid shows failures and skips too.
FLAKY = "t013"
READER_PW = "Grid-Reader-Pw-123"


def big_dag() -> str:
    lines = ["dag: {id: ui_big, description: 200 tasks in 10 chains, max_active_runs: 20}", "tasks:"]
    for i in range(TASKS):
        requires = f", requires: [t{i - CHAINS:03d}]" if i >= CHAINS else ""
        script = 'case "$KIOK_RUN_ID" in *0|*5) exit 1;; esac' if f"t{i:03d}" == FLAKY else "true"
        lines.append(f"  - {{id: t{i:03d}{requires}, script: '{script}'}}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-grid") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
    node.start()
    yield node
    node.stop()


def open_page(
    browser: Any, kiok: Standalone, user: str, password: str, start: str = "/"
) -> tuple[Any, Any, Console]:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    console = Console()
    page.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console.errors.append(f"uncaught: {e}"))
    page.goto(kiok.url + "/login?next=" + start.replace("/", "%2F"))
    page.get_by_label("User").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("user")).to_have_text(user)
    return context, page, console


def test_grid_of_200_tasks_and_20_runs(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    kiok.register(big_dag())
    runs = [kiok.trigger("ui_big") for _ in range(RUNS)]
    kiok.wait_run(runs[0], timeout_s=120)
    context, page, console = open_page(browser, kiok, "admin", ADMIN_PASSWORD)

    # From the DAG page, the Grid link.
    page.goto(kiok.url + "/dags/ui_big")
    started = time.monotonic()
    page.get_by_role("link", name="Grid").click()
    expect(page).to_have_url(kiok.url + "/dags/ui_big/grid")
    grid = page.get_by_test_id("grid")
    expect(grid.locator("tbody tr")).to_have_count(TASKS)
    expect(grid.locator("thead .grun")).to_have_count(RUNS)
    expect(grid.locator("tbody td")).to_have_count(TASKS * RUNS)
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"the grid took {elapsed:.1f} s to render"
    # Rows in topological order: the ten chain heads first.
    heads = grid.locator("tbody th").evaluate_all("ths => ths.slice(0, 10).map(t => t.textContent)")
    assert heads == [f"t{i:03d}" for i in range(CHAINS)]
    # Newest run first; its column header links to the run.
    expect(grid.locator("thead .grun a").first).to_have_attribute("href", f"/runs/{runs[-1]}")

    # The oldest run finished: every cell has a state (glyph + hidden text + title).
    oldest = grid.locator("thead .grun").count() - 1
    cell = grid.locator("tr[data-task=t000] td").nth(oldest).locator("a")
    expect(cell).to_have_attribute("data-state", "SUCCESS")
    expect(cell).to_have_attribute("title", re.compile(r"^t000 · SUCCESS · .*run " + re.escape(runs[0])))
    expect(cell).to_contain_text("SUCCESS")
    # Unfinished runs are re-polled: the newest run (most likely still queued when the grid
    # opened) ends on screen without a reload; runs where the flaky task failed show skips.
    last = kiok.wait_run(runs[-1], timeout_s=120)
    newest = grid.locator("thead .grun a").first
    expect(newest).to_have_attribute("data-state", last["state"])
    expect(grid.locator(f"tr[data-task={FLAKY}] td").first.locator("a")).to_have_attribute(
        "data-state", last["tasks"][FLAKY]["state"]
    )
    expect(grid.locator("td a[data-state=SKIPPED]").first).to_be_visible()
    page.screenshot(path=str(shots / "grid.png"))

    cell.click()
    expect(page).to_have_url(kiok.url + f"/runs/{runs[0]}/tasks/t000")
    expect(page.get_by_test_id("log-status")).to_contain_text("Complete")
    for run_id in runs:
        kiok.api("POST", f"/api/v1/runs/{run_id}/cancel")
    context.close()
    assert console.errors == []


def test_cluster_page_maintenance_and_refused_actions(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    context, page, console = open_page(browser, kiok, "admin", ADMIN_PASSWORD)
    page.get_by_label("Main").get_by_role("link", name="Cluster").click()
    expect(page).to_have_url(kiok.url + "/cluster")
    masters = page.get_by_test_id("masters")
    expect(masters.locator("tbody tr")).to_have_count(1)
    expect(masters).to_contain_text("leader")
    expect(masters).to_contain_text("ready")
    worker = page.get_by_test_id("workers").locator("tbody tr").first
    expect(worker).to_contain_text("connected")
    expect(worker).to_contain_text(re.compile(r"\d+s ago"))
    expect(worker).to_contain_text("busy")
    expect(page.get_by_test_id("maintenance-state")).to_have_text("off")
    expect(page.get_by_test_id("maintenance-banner")).to_have_count(0)

    # Enter maintenance: confirmed, the banner appears, on every page.
    page.get_by_role("button", name="Enter maintenance").click()
    page.get_by_role("button", name="Yes, enter").click()
    expect(page.get_by_test_id("maintenance-state")).to_have_text("on")
    expect(page.get_by_test_id("maintenance-banner")).to_be_visible()
    assert kiok.api("GET", "/api/v1/admin/maintenance").json()["enabled"] is True
    page.screenshot(path=str(shots / "cluster.png"))
    page.get_by_label("Main").get_by_role("link", name="DAGs").click()
    expect(page.get_by_role("heading", name="DAGs")).to_be_visible()
    expect(page.get_by_test_id("maintenance-banner")).to_be_visible()
    page.get_by_test_id("maintenance-banner").get_by_role("link", name="Cluster").click()
    page.get_by_role("button", name="Leave maintenance").click()
    page.get_by_role("button", name="Yes, leave").click()
    expect(page.get_by_test_id("maintenance-state")).to_have_text("off")
    expect(page.get_by_test_id("maintenance-banner")).to_have_count(0)
    context.close()
    assert console.errors == []

    # A user who may read the cluster and nothing else: actions answer 403, shown inline.
    policy = {"Statement": [{"Effect": "Allow", "Action": "cluster:Read", "Resource": "cluster"}]}
    r = kiok.api("POST", "/api/v1/iam/policies", json={"policy": "cluster-viewer", "document": policy})
    assert r.status_code == 201, r.text
    body = {"user": "viewer", "password": READER_PW, "policies": ["cluster-viewer"]}
    assert kiok.api("POST", "/api/v1/iam/users", json=body).status_code == 201
    context, page, console = open_page(browser, kiok, "viewer", READER_PW, start="/cluster")
    expect(page.get_by_test_id("maintenance-state")).to_have_text("off")
    page.get_by_role("button", name="Enter maintenance").click()
    page.get_by_role("button", name="Yes, enter").click()
    action = page.get_by_test_id("maintenance-action")
    expect(action.get_by_role("alert")).to_contain_text("Not allowed")
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("button", name="Enter maintenance")).to_be_disabled()
    console.take("status of 403")
    revoke = page.get_by_test_id("revoke").first
    revoke.get_by_role("button", name="Revoke").click()
    revoke.get_by_role("button", name="Yes, revoke").click()
    expect(revoke.get_by_role("alert")).to_contain_text("Not allowed")
    console.take("status of 403")
    assert httpx.get(kiok.url + "/cluster/health").json()["maintenanceMode"] is False
    context.close()
    assert console.errors == []
