"""The grid and the cluster page in a real browser against a real ``kiok standalone``: a
200-task DAG with 20 runs renders quickly and a cell opens its task's log; a first row's
attempt number is not drawn under the grid's sticky header; the cluster page shows the master
and the worker, switches maintenance mode (with a banner on every page), and offers its actions
only as the user's policies allow (``admin:Maintenance``, ``cluster:RevokeWorker``; a read-only
user none); a worker's Revoke confirm and a refusal (there and in the maintenance card) wrap
within the page at 1366 and 390 px."""

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
from tests.e2e.test_ui_audit import PHONE, inside, log_in, new_page

TASKS = 200
RUNS = 20
CHAINS = 10
#: Fails in every run whose id ends in 0 or 5, so the grid shows failures and skips too.
FLAKY = "t013"
READER_PW = "Grid-Reader-Pw-123"
PW = "Cluster-User-Pw-123"
DESKTOP = {"width": 1366, "height": 768}
#: How far the page is wider than the window (0: not at all).
OVERFLOW = "() => document.documentElement.scrollWidth - innerWidth"
#: Its first task succeeds at its third attempt: the grid's first row carries an attempt number.
RETRIES = """
dag: {id: s26_retries}
tasks:
  - {id: flaky, retries: 2, retry_delay: 0s, script: '[ "$KIOK_ATTEMPT" -ge 3 ]'}
  - {id: after, requires: [flaky], script: 'true'}
"""
#: In the page: which cells of the grid change (their column index, 0 = newest run).
WATCH_CELLS = """
(() => {
  window.__changed = new Set();
  const body = document.querySelector("[data-testid=grid]");
  new MutationObserver((records) => {
    for (const r of records) {
      const cell = r.type === "characterData" ? r.target.parentElement : r.target;
      if (!cell || !cell.classList.contains("gc")) continue;
      window.__changed.add([...cell.parentElement.children].indexOf(cell) - 1);
    }
  }).observe(body, { attributes: true, characterData: true, subtree: true });
})()
"""


def big_dag() -> str:
    lines = [
        "dag: {id: ui_big, description: 200 tasks in 10 chains, max_active_runs: 21,",
        "      params: {hold: {type: integer, default: 0}}}",
        "tasks:",
    ]
    for i in range(TASKS):
        requires = f", requires: [t{i - CHAINS:03d}]" if i >= CHAINS else ""
        script = 'case "$KIOK_RUN_ID" in *0|*5) exit 1;; esac' if f"t{i:03d}" == FLAKY else "true"
        if i == 0:
            script = "sleep ${params.hold}"
        lines.append(f"  - {{id: t{i:03d}{requires}, script: '{script}'}}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-grid") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
    node.start()
    yield node
    node.stop()


def open_page(
    browser: Any, kiok: Standalone, user: str, password: str, start: str = "/", scheme: str = "light"
) -> tuple[Any, Any, Console]:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(viewport=VIEWPORT, color_scheme=scheme)
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
    for run_id in runs:
        kiok.wait_run(run_id, timeout_s=180)
    # One more run that stays unfinished (t000 sleeps) while the grid is watched.
    holding = kiok.trigger("ui_big", {"hold": 600})
    kiok.wait_for(lambda: kiok.run(holding)["tasks"]["t000"]["state"] == "RUNNING", 60, "t000 to start")
    context, page, console = open_page(browser, kiok, "admin", ADMIN_PASSWORD)
    grid_reads: list[str] = []
    page.on("response", lambda r: grid_reads.append(r.url) if "/grid?" in r.url else None)

    # From the DAG page, the Grid link.
    page.goto(kiok.url + "/dags/ui_big")
    started = time.monotonic()
    page.get_by_role("link", name="Grid").click()
    expect(page).to_have_url(kiok.url + "/dags/ui_big/grid")
    grid = page.get_by_test_id("grid")
    expect(page.locator(".grid-head .grun")).to_have_count(RUNS + 1)
    expect(grid.locator(".grow").first.locator("a.gc")).to_have_count(RUNS + 1)
    elapsed = time.monotonic() - started
    # A guard against a pathological render, not a measure (bench/ui_grid.py is): generous
    # for a loaded CI machine.
    assert elapsed < 10, f"the grid took {elapsed:.1f} s to render"
    # Only the rows on screen (and a margin) are in the page, in topological order.
    shown = grid.locator(".grow").count()
    assert 20 <= shown < 80, shown
    heads = grid.locator(".grow").evaluate_all("rows => rows.slice(0, 10).map(r => r.dataset.task)")
    assert heads == [f"t{i:03d}" for i in range(CHAINS)]
    expect(page.locator(".grid-head")).to_contain_text(f"({TASKS})")
    # Newest run first; its column header links to the run.
    expect(page.locator(".grid-head .grun a").first).to_have_attribute("href", f"/runs/{holding}")

    # The oldest run finished: every cell has a state (glyph, title, label for screen readers).
    cell = grid.locator(".grow[data-task=t000] a.gc").nth(RUNS)
    expect(cell).to_have_attribute("data-state", "SUCCESS")
    expect(cell).to_have_text("✓")
    cell.hover()  # the tooltip is written on hover
    expect(cell).to_have_attribute("title", re.compile(r"^t000 · SUCCESS · .*run " + re.escape(runs[0])))
    expect(cell).to_have_attribute("aria-label", re.compile("SUCCESS"))
    expect(grid.locator(f".grow[data-task={FLAKY}] a[data-state=FAILED]").first).to_be_visible()
    expect(grid.locator("a.gc[data-state=SKIPPED]").first).to_be_visible()
    running = grid.locator(".grow[data-task=t000] a.gc").first
    expect(running).to_have_attribute("data-state", "RUNNING")
    running.hover()
    expect(running).to_have_attribute("title", re.compile(r"t000 · RUNNING · \d"))

    # A refresh redraws only the unfinished run's column (the newest, column 0), even when
    # it re-reads the whole page (every fifth refresh).
    page.evaluate(WATCH_CELLS)
    reads = len(grid_reads)
    deadline = time.monotonic() + 60
    while not any("runs=" not in u for u in grid_reads[reads:]) or len(grid_reads) < reads + 3:
        assert time.monotonic() < deadline, grid_reads
        page.wait_for_timeout(200)
    page.wait_for_timeout(300)
    assert any("runs=" in u for u in grid_reads[reads:]), grid_reads
    changed = page.evaluate("[...window.__changed]")
    assert changed == [0], changed

    # The unfinished run is re-polled: cancelled, it ends on screen without a reload.
    kiok.api("POST", f"/api/v1/runs/{holding}/cancel")
    last = kiok.wait_run(holding, timeout_s=60)
    expect(page.locator(".grid-head .grun a").first).to_have_attribute("data-state", last["state"])
    expect(running).to_have_attribute("data-state", last["tasks"]["t000"]["state"])
    page.mouse.move(0, 0)  # no hover highlight in the picture
    page.screenshot(path=str(shots / "grid.png"))

    # Scrolled to the end: the last tasks are drawn, the first ones are gone.
    page.locator(".grid-scroll").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    expect(grid.locator(".grow[data-task=t199] a.gc")).to_have_count(RUNS + 1)
    expect(grid.locator(".grow[data-task=t000]")).to_have_count(0)
    assert grid.locator(".grow").count() < 80
    page.locator(".grid-scroll").evaluate("el => { el.scrollTop = 0; }")

    cell.click()
    expect(page).to_have_url(kiok.url + f"/runs/{runs[0]}/tasks/t000")
    expect(page.get_by_test_id("log-status")).to_contain_text("Complete")

    keyboard_only(page, kiok, [holding, *runs[::-1]])
    context.close()
    assert console.errors == []


#: In the page: the focused element's row (task), aria-label, href and outline style.
FOCUSED = """(() => {
  const a = document.activeElement;
  const row = a.closest(".grow");
  return [row ? row.dataset.task : null, a.getAttribute("aria-label"), a.getAttribute("href"),
          getComputedStyle(a).outlineStyle, a.tabIndex];
})()"""


def keyboard_only(page: Any, kiok: Standalone, columns: list[str]) -> None:
    """The grid by keyboard alone: one tab stop, arrows (scrolling the rows in), Home/End,
    the header's run links, and Enter opening the task's log. ``columns``: newest first."""
    from playwright.sync_api import expect

    page.goto(kiok.url + "/dags/ui_big/grid")
    expect(page.get_by_test_id("grid").locator(".grow").first.locator("a.gc")).to_have_count(len(columns))
    # Tab from the top of the page to the grid: its first cell, the newest run.
    page.locator("body").focus()
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate(FOCUSED)[0] is not None:
            break
    task, label, href, outline, tabindex = page.evaluate(FOCUSED)
    assert (task, tabindex, outline) == ("t000", 0, "solid"), (task, tabindex, outline)
    assert label.startswith(f"t000, run {columns[0]}: "), label
    assert page.locator(".grid-scroll [tabindex='0']").count() == 1
    # One tab stop: Tab leaves the grid, Shift+Tab comes back to the same cell.
    page.keyboard.press("Tab")
    assert page.evaluate("!!document.activeElement.closest('.grid-scroll')") is False
    page.keyboard.press("Shift+Tab")
    assert page.evaluate(FOCUSED)[0] == "t000"

    for key in ("ArrowDown", "ArrowDown", "ArrowRight", "ArrowRight", "ArrowUp"):
        page.keyboard.press(key)
    task, label, *_ = page.evaluate(FOCUSED)
    assert task == "t001" and label.startswith(f"t001, run {columns[2]}: "), label
    page.keyboard.press("End")
    assert page.evaluate(FOCUSED)[1].startswith(f"t001, run {columns[-1]}: ")
    page.keyboard.press("Home")
    assert page.evaluate(FOCUSED)[1].startswith(f"t001, run {columns[0]}: ")
    # Far away: rows scrolled in as needed; the first ones leave the page.
    page.keyboard.press("Control+End")
    task, label, _, outline, _ = page.evaluate(FOCUSED)
    assert task == f"t{TASKS - 1:03d}" and label.startswith(f"{task}, run {columns[-1]}: "), label
    assert outline == "solid"
    expect(page.get_by_test_id("grid").locator(".grow[data-task=t000]")).to_have_count(0)
    page.keyboard.press("PageUp")
    assert int(page.evaluate(FOCUSED)[0][1:]) < TASKS - 10
    page.keyboard.press("Control+Home")
    assert page.evaluate(FOCUSED)[1].startswith(f"t000, run {columns[0]}: ")
    # Up from the first row: the runs' links in the header.
    page.keyboard.press("ArrowUp")
    assert page.evaluate(FOCUSED)[2] == f"/runs/{columns[0]}"
    # Down to t005 of the second-oldest run, and Enter opens its log.
    page.keyboard.press("ArrowDown")
    for _ in range(5):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("End")
    page.keyboard.press("ArrowLeft")
    task, label, href, *_ = page.evaluate(FOCUSED)
    assert task == "t005" and label.startswith(f"t005, run {columns[-2]}: "), label
    assert href == f"/runs/{columns[-2]}/tasks/t005"
    page.keyboard.press("Enter")
    expect(page).to_have_url(kiok.url + f"/runs/{columns[-2]}/tasks/t005")
    expect(page.get_by_test_id("log-status")).to_contain_text("Complete")


# Before, it was drawn under the grid's sticky header.
def test_the_first_rows_attempt_number_is_not_under_the_header(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    kiok.register(RETRIES)
    run_id = kiok.trigger("s26_retries")
    assert kiok.wait_run(run_id, timeout_s=60)["state"] == "SUCCESS"
    context, page, console = new_page(browser)
    log_in(page, kiok, "/dags/s26_retries/grid")
    first = page.get_by_test_id("grid").locator(".grow .gc[data-attempt='3']")
    expect(first).to_have_count(1)
    hidden = first.evaluate("""(cell) => {
      const head = document.querySelector(".grid-head").getBoundingClientRect();
      const top = parseFloat(getComputedStyle(cell, "::after").top);
      return head.bottom - (cell.getBoundingClientRect().top + top);
    }""")
    assert hidden <= 0, f"the attempt number is {hidden} px under the header"
    page.screenshot(path=str(shots / "s26-grid-first-row.png"))
    context.close()
    assert console.errors == []


def test_cluster_page_maintenance_and_actions_not_offered(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
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

    # A user who may read the cluster and nothing else: its actions are not offered (from /me).
    policy = {"Statement": [{"Effect": "Allow", "Action": "cluster:Read", "Resource": "cluster"}]}
    r = kiok.api("POST", "/api/v1/iam/policies", json={"policy": "cluster-viewer", "document": policy})
    assert r.status_code == 201, r.text
    body = {"user": "viewer", "password": READER_PW, "policies": ["cluster-viewer"]}
    assert kiok.api("POST", "/api/v1/iam/users", json=body).status_code == 201
    context, page, console = open_page(browser, kiok, "viewer", READER_PW, start="/cluster")
    expect(page.get_by_test_id("maintenance-state")).to_have_text("off")
    expect(page.get_by_test_id("workers").locator("tbody tr")).to_have_count(1)
    page.wait_for_load_state("networkidle")
    expect(page.get_by_role("button", name=re.compile("maintenance"))).to_have_count(0)
    expect(page.get_by_test_id("revoke")).to_have_count(0)
    assert httpx.get(kiok.url + "/cluster/health").json()["maintenanceMode"] is False
    context.close()
    assert console.errors == []


def add_user(kiok: Standalone, user: str, actions: list[str], resource: str = "*") -> None:
    policy = {"Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}]}
    r = kiok.api("POST", "/api/v1/iam/policies", json={"policy": f"{user}-policy", "document": policy})
    assert r.status_code == 201, r.text
    body = {"user": user, "password": PW, "policies": [f"{user}-policy"]}
    r = kiok.api("POST", "/api/v1/iam/users", json=body)
    assert r.status_code == 201, r.text


def within(page: Any, locator: Any, outer: Any) -> None:
    """``locator`` is on screen (sideways) and inside ``outer``'s box."""
    box = locator.bounding_box()
    assert box is not None
    width = page.evaluate("innerWidth")
    assert box["x"] >= -0.5 and box["x"] + box["width"] <= width + 0.5, (box, width)
    assert inside(box, outer.bounding_box()), (box, outer.bounding_box())


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1366", "390"])
def test_the_revoke_confirm_and_refusals_wrap_within_the_page(
    kiok: Standalone, browser: Any, shots: Path, viewport: dict[str, int]
) -> None:
    """Before: the confirm sat in the actions cell (``white-space: nowrap``): the page grew to
    1481 px at 1366, its words and the refusal were cut, and at 390 px "Yes, revoke" too."""
    from playwright.sync_api import expect

    kiok.wait_for(lambda: kiok.api("GET", "/api/v1/cluster").json()["workers"], 30, "the worker")
    context, page, console = new_page(browser, viewport=viewport)
    log_in(page, kiok, "/cluster")
    table = page.get_by_test_id("workers")
    worker = kiok.api("GET", "/api/v1/cluster").json()["workers"][0]["id"]
    refusal = (
        f"worker {worker} is running tasks of runs that cannot be moved elsewhere right now; "
        "drain it first (kiok workers drain) and try again once its tasks have ended"
    )
    # The master is not asked: the worker stays (other tests here need it).
    page.route(
        "**/api/v1/admin/workers/**",
        lambda route: route.fulfill(status=409, json={"error": {"code": "conflict", "message": refusal}}),
    )
    revoke = table.get_by_role("button", name="Revoke")
    revoke.click()
    group = page.get_by_role("group", name="Confirm: Revoke")
    yes = group.get_by_role("button", name="Yes, revoke")
    expect(yes).to_be_focused()
    assert page.evaluate(OVERFLOW) <= 0
    question = group.get_by_text(f"Revoke {worker}? It is disconnected at once")
    for part in (question, yes, group.get_by_role("button", name="Cancel")):
        within(page, part, table)
    yes.click()
    alert = table.get_by_role("alert")
    expect(alert).to_contain_text(refusal)
    console.take("status of 409")
    assert page.evaluate(OVERFLOW) <= 0
    within(page, alert, table)
    within(page, yes, table)
    page.screenshot(path=str(shots / f"s24-revoke-refused-{viewport['width']}.png"), full_page=True)
    group.get_by_role("button", name="Cancel").click()
    expect(group).to_have_count(0)
    expect(revoke).to_be_focused()
    expect(revoke).to_have_accessible_name(f"Revoke {worker}")

    # Maintenance's refusal wraps within its card too.
    card = page.get_by_test_id("maintenance")
    page.route(
        "**/api/v1/admin/maintenance",
        lambda route: (
            route.fulfill(status=409, json={"error": {"code": "conflict", "message": refusal}})
            if route.request.method == "POST"
            else route.continue_()
        ),
    )
    card.get_by_role("button", name="Enter maintenance").click()
    card.get_by_role("button", name="Yes, enter").click()
    alert = card.get_by_role("alert")
    expect(alert).to_contain_text(refusal)
    console.take("status of 409")
    assert page.evaluate(OVERFLOW) <= 0
    within(page, alert, card)
    within(page, card.get_by_role("button", name="Yes, enter"), card)
    page.screenshot(path=str(shots / f"s24-maintenance-refused-{viewport['width']}.png"), full_page=True)
    context.close()
    assert console.errors == []


def test_cluster_actions_are_offered_as_the_policies_allow(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    """Before: Enter maintenance and Revoke were offered to everyone, refused (403) after the
    confirm, and only then disabled."""
    from playwright.sync_api import expect

    kiok.wait_for(lambda: kiok.api("GET", "/api/v1/cluster").json()["workers"], 30, "the worker")
    add_user(kiok, "s24_viewer", ["cluster:Read"], "cluster")
    add_user(kiok, "s24_operator", ["cluster:Read", "admin:Maintenance"], "cluster")
    asked: list[str] = []

    # May switch maintenance mode, may not revoke: /me has been read, and says so.
    context, page, console = new_page(browser, viewport=DESKTOP)
    log_in(page, kiok, "/cluster", "s24_operator", PW)
    expect(page.get_by_role("button", name="Enter maintenance")).to_be_visible()
    expect(page.get_by_test_id("workers").locator("tbody tr")).to_have_count(1)
    expect(page.get_by_role("button", name=re.compile("^Revoke"))).to_have_count(0)
    expect(page.get_by_test_id("workers").locator("th")).to_have_count(7)
    context.close()
    assert console.errors == []

    # May only read the cluster: no action at all, and no request refused.
    context, page, console = new_page(browser, viewport=DESKTOP)
    page.on("request", lambda r: asked.append(r.url) if r.method != "GET" else None)
    log_in(page, kiok, "/cluster", "s24_viewer", PW)
    expect(page.get_by_test_id("maintenance-state")).to_have_text("off")
    expect(page.get_by_test_id("workers").locator("tbody tr")).to_have_count(1)
    page.wait_for_load_state("networkidle")
    expect(page.get_by_role("button", name=re.compile("maintenance"))).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Revoke"))).to_have_count(0)
    expect(page.get_by_test_id("workers").locator("th")).to_have_count(7)
    page.screenshot(path=str(shots / "s24-cluster-viewer.png"))
    context.close()
    assert console.errors == []
    assert [u for u in asked if "/auth/" not in u] == []

    # An admin is offered both.
    context, page, console = new_page(browser, viewport=DESKTOP)
    log_in(page, kiok, "/cluster", "admin", ADMIN_PASSWORD)
    expect(page.get_by_role("button", name="Enter maintenance")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("^Revoke"))).to_have_count(1)
    context.close()
    assert console.errors == []
