"""Fixes from the UI audit, in a real browser against a real ``kiok standalone``: the top bar
and tables on a phone-sized screen, the backup page without a target, an unknown task's log,
the timeline of a cancelled run, the grid's and timeline's right edge, the graph's fit, zoom
(Ctrl + wheel; a plain wheel scrolls the page), pan, sibling order, clicks, keys and touch,
one duration format (re-runs included), why a task was skipped (from the run's DAG version),
a nav without the pages a user may not read, and a late /me answer for the previous user."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.e2e.conftest import TIMEOUT_MS, Console

PHONE = {"width": 390, "height": 844}
LEAVES = 50
NOBODY_PW = "Nobody-Policy-Pw-123"
#: The elements that stick out of the viewport (not counting those inside a scrolling box).
WIDE = """() => [...document.querySelectorAll("body *")]
  .filter((e) => e.getBoundingClientRect().right > innerWidth + 1)
  .map((e) => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`).slice(0, 12)"""

FAILS = """
dag: {id: au_fails}
tasks:
  - {id: start, script: 'echo start'}
  - {id: boom, requires: [start], retries: 1, retry_delay: 0s, script: 'echo boom; exit 3'}
  - {id: after_boom, requires: [boom], script: 'echo never'}
  - {id: side, requires: [start], script: 'sleep 1'}
"""

SLOW = """
dag: {id: au_slow}
tasks:
  - {id: wait, script: 'sleep 60'}
  - {id: then, requires: [wait], script: 'echo then'}
"""


def fan_out() -> str:
    lines = ["dag: {id: au_fan}", "tasks:", "  - {id: root, script: 'true'}"]
    leaves = [f"leaf_{i:02d}" for i in range(1, LEAVES + 1)]
    lines += [f"  - {{id: {leaf}, requires: [root], script: 'true'}}" for leaf in leaves]
    lines.append(f"  - {{id: join, requires: [{', '.join(leaves)}], script: 'true'}}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-audit") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def runs(kiok: Standalone) -> dict[str, str]:
    kiok.register(FAILS)
    kiok.register(SLOW)
    kiok.register(fan_out())
    out = {"fails": kiok.trigger("au_fails"), "fan": kiok.trigger("au_fan")}
    out["fails2"] = kiok.trigger("au_fails")
    for key in ("fails", "fails2", "fan"):
        kiok.wait_run(out[key], timeout_s=120)
    out["cancelled"] = kiok.trigger("au_slow")
    kiok.wait_for(
        lambda: kiok.run(out["cancelled"])["tasks"]["wait"]["state"] == "RUNNING", 60, "wait to start"
    )
    kiok.api("POST", f"/api/v1/runs/{out['cancelled']}/cancel")
    kiok.wait_run(out["cancelled"], timeout_s=60)
    return out


def open_page(
    browser: Any,
    kiok: Standalone,
    start: str,
    *,
    viewport: dict[str, int] | None = None,
    user: str = "admin",
    password: str = ADMIN_PASSWORD,
) -> tuple[Any, Any, Console]:
    """A new browser context and page, logged in as ``user`` and sent on to ``start``."""
    context, page, console = new_page(browser, viewport=viewport)
    log_in(page, kiok, start, user, password)
    return context, page, console


def new_page(
    browser: Any, *, viewport: dict[str, int] | None = None, **options: Any
) -> tuple[Any, Any, Console]:
    """A new browser context (``options`` for it, e.g. ``has_touch``) and page, not logged
    in: the page's console errors and uncaught exceptions are collected."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(
        viewport=viewport or {"width": 1280, "height": 800}, color_scheme="light", **options
    )
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    console = Console()
    page.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console.errors.append(f"uncaught: {e}"))
    return context, page, console


def log_in(
    page: Any, kiok: Standalone, start: str, user: str = "admin", password: str = ADMIN_PASSWORD
) -> None:
    """Log in through the login page, which then goes on to ``start``."""
    from playwright.sync_api import expect

    page.goto(kiok.url + "/login?next=" + start.replace("/", "%2F").replace("?", "%3F").replace("=", "%3D"))
    page.get_by_label("User").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("user")).to_have_text(user)


def wait_scroll(page: Any, ok: Any) -> None:
    """Wait until the page's scrollY satisfies ``ok`` (wait_for_function would eval: the CSP
    forbids it)."""
    for _ in range(50):
        if ok(page.evaluate("scrollY")):
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"scrollY is {page.evaluate('scrollY')}")


def inside(box: Mapping[str, float] | None, outer: Mapping[str, float], slack: float = 0.5) -> bool:
    assert box is not None
    return (
        box["x"] >= outer["x"] - slack
        and box["y"] >= outer["y"] - slack
        and box["x"] + box["width"] <= outer["x"] + outer["width"] + slack
        and box["y"] + box["height"] <= outer["y"] + outer["height"] + slack
    )


def test_phone_width_top_bar_wraps_and_tables_scroll_inside(
    kiok: Standalone, runs: dict[str, str], browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    context, page, console = open_page(browser, kiok, "/", viewport=PHONE)
    screen = {"x": 0, "y": 0, "width": PHONE["width"], "height": PHONE["height"]}
    pages = {
        "dashboard": "/",
        "dags": "/dags",
        "run": f"/runs/{runs['fails']}",
        "cluster": "/cluster",
        "users": "/settings/users",
        "grid": "/dags/au_fails/grid",
        "log": f"/runs/{runs['fails']}/tasks/boom",
    }
    for name, path in pages.items():
        page.goto(kiok.url + path)
        expect(page.get_by_test_id("user")).to_have_text("admin")
        page.wait_for_load_state("networkidle")
        widths = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert widths[0] <= widths[1], (
            f"{path}: the page scrolls sideways ({widths[0]} > {widths[1]}): {page.evaluate(WIDE)}"
        )
        bar = page.locator("header.topbar")
        for part in (
            bar.get_by_role("button", name="Log out"),
            bar.get_by_role("link", name="Settings"),
            bar.get_by_role("group", name="Times shown in"),
            bar.get_by_test_id("user"),
        ):
            assert inside(part.bounding_box(), screen), f"{path}: {part} is off screen"
        bar_box = bar.bounding_box()
        assert bar_box is not None and bar_box["width"] >= PHONE["width"] - 1, (
            "the bar's background stops short"
        )
        page.screenshot(path=str(shots / f"phone_{name}.png"))
    # A table wider than the screen scrolls in its own box.
    page.goto(kiok.url + f"/runs/{runs['fails']}")
    jobs = page.locator("table.jobs")
    expect(jobs.locator("tr[data-task=boom]")).to_be_visible()
    sizes = jobs.evaluate("t => [t.scrollWidth, t.clientWidth, getComputedStyle(t).overflowX]")
    assert sizes[0] > sizes[1] and sizes[2] == "auto", sizes
    jobs.evaluate("t => { t.scrollLeft = t.scrollWidth; }")
    page.screenshot(path=str(shots / "phone_run_jobs_scrolled.png"))
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert console.errors == []
    context.close()


def test_backups_without_a_target(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    context, page, console = open_page(browser, kiok, "/settings/backups")
    expect(page.get_by_test_id("no-backup-target")).to_contain_text(
        "set kiok.backup.dir or the kiok.backup.s3.* settings"
    )
    expect(page.get_by_role("button", name="Save schedule")).to_be_disabled()
    expect(page.get_by_test_id("schedule-no-target")).to_contain_text("once a backup target is set")
    page.screenshot(path=str(shots / "backups_no_target.png"))
    context.close()
    assert console.errors == []  # the list used to answer 409, which the browser logged


def test_unknown_task_log_shows_only_the_error(
    kiok: Standalone, runs: dict[str, str], browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    context, page, console = open_page(browser, kiok, f"/runs/{runs['fails']}/tasks/nope")
    expect(page.locator(".error")).to_contain_text("nope")
    page.wait_for_load_state("networkidle")
    expect(page.get_by_test_id("log-status")).to_have_count(0)
    expect(page.get_by_test_id("log")).to_have_count(0)
    expect(page.get_by_text("(no output yet)")).to_have_count(0)
    page.screenshot(path=str(shots / "log_unknown_task.png"))
    console.errors.clear()  # the 404
    context.close()


def test_timeline_of_a_cancelled_run_and_its_width(
    kiok: Standalone, runs: dict[str, str], browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    context, page, console = open_page(browser, kiok, f"/runs/{runs['cancelled']}?tab=timeline")
    note = page.get_by_test_id("timeline-not-started")
    expect(note).to_have_text("1 task never started: the run was cancelled first.")
    expect(page.get_by_test_id("timeline")).not_to_contain_text("why each waits")
    page.screenshot(path=str(shots / "timeline_cancelled.png"))

    page.goto(kiok.url + f"/runs/{runs['fan']}?tab=timeline")
    timeline = page.get_by_test_id("timeline")
    expect(timeline.locator("a.bar")).to_have_count(LEAVES + 2)
    svg = timeline.locator("svg.timeline").bounding_box()
    wrap = timeline.bounding_box()
    assert svg is not None and wrap is not None
    assert svg["width"] >= wrap["width"] * 0.95, f"the timeline uses {svg['width']} of {wrap['width']} px"
    ticks = timeline.locator(".tick text")
    last = ticks.nth(ticks.count() - 1).bounding_box()
    assert last is not None and last["x"] + last["width"] <= svg["x"] + svg["width"], (
        "the last axis label is cut"
    )
    page.screenshot(path=str(shots / "timeline_fanout.png"))
    assert console.errors == []
    context.close()


def test_grid_shows_the_last_columns_attempt(
    kiok: Standalone, runs: dict[str, str], browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    context, page, console = open_page(browser, kiok, "/dags/au_fails/grid")
    grid = page.get_by_test_id("grid")
    expect(grid.locator(".gc[data-attempt]")).not_to_have_count(0)
    # The attempt badge sticks out 4px right of its cell: the scroller must not clip it.
    room = page.evaluate("""() => {
      const scroller = document.querySelector(".grid-scroll");
      const edge = scroller.getBoundingClientRect().left + scroller.clientLeft + scroller.clientWidth;
      const cells = [...document.querySelectorAll(".grow .gc[data-attempt]")];
      return Math.min(...cells.map((c) => edge - (c.getBoundingClientRect().right + 4)));
    }""")
    assert room >= 0, f"the attempt number is cut by {-room} px"
    page.screenshot(path=str(shots / "grid_attempts.png"))
    assert console.errors == []
    context.close()


def test_fan_out_graph_fits_zooms_pans_and_keeps_order(
    kiok: Standalone, runs: dict[str, str], browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    context, page, console = open_page(browser, kiok, f"/runs/{runs['fan']}")
    graph = page.get_by_test_id("graph")
    expect(graph.locator("a.node")).to_have_count(LEAVES + 2)
    box = graph.locator(".graph-box")
    page.wait_for_timeout(300)
    # Too tall to fit at a readable zoom: the first view is readable (test_ui_layout); Fit shows all.
    assert float(graph.get_attribute("data-zoom") or 0) >= 0.5
    graph.get_by_role("button", name="Fit").click()
    page.evaluate("scrollTo(0, 0)")
    wait_scroll(page, lambda y: y == 0)
    view = box.bounding_box()
    assert view is not None
    for task in ("root", "join", "leaf_01", f"leaf_{LEAVES:02d}"):
        assert inside(graph.locator(f"a.node[data-task={task}] rect").first.bounding_box(), view), (
            f"{task} off view"
        )
    ys = [
        graph.locator(f"a.node[data-task=leaf_{i:02d}] rect").first.bounding_box()["y"]
        for i in range(1, LEAVES + 1)
    ]
    assert ys == sorted(ys), "the leaves are not in their declared order"
    page.screenshot(path=str(shots / "graph_fanout_fit.png"))

    fit_zoom = float(graph.get_attribute("data-zoom") or 0)
    graph.get_by_role("button", name="Zoom in").click()
    expect(graph).not_to_have_attribute("data-zoom", f"{fit_zoom:.3f}")
    assert float(graph.get_attribute("data-zoom") or 0) > fit_zoom
    # A plain wheel over the graph scrolls the page (and says how to zoom); it does not zoom.
    root = graph.locator("a.node[data-task=root] rect").first
    rb = root.bounding_box()
    assert rb is not None
    page.mouse.move(rb["x"] + rb["width"] / 2, rb["y"] + rb["height"] / 2)
    before = float(graph.get_attribute("data-zoom") or 0)
    # The hint goes 1.5 s after the wheel: what appears is recorded as it appears, so a slow
    # look cannot miss it.
    page.evaluate(
        """() => { window.__hint = null; new MutationObserver(() => {
            const hint = document.querySelector("[data-testid=graph-hint]");
            if (hint && hint.textContent) window.__hint = hint.textContent;
        }).observe(document.body, { childList: true, subtree: true, characterData: true }); }"""
    )
    page.mouse.wheel(0, 120)
    page.wait_for_function("() => window.__hint === 'Ctrl + scroll to zoom'")
    wait_scroll(page, lambda y: y > 0)
    assert float(graph.get_attribute("data-zoom") or 0) == pytest.approx(before, abs=0.001)
    page.screenshot(path=str(shots / "graph_fanout_wheel_hint.png"))
    page.evaluate("scrollTo(0, 0)")
    wait_scroll(page, lambda y: y == 0)
    rb = root.bounding_box()
    assert rb is not None
    page.mouse.move(rb["x"] + rb["width"] / 2, rb["y"] + rb["height"] / 2)
    # Ctrl + wheel (a trackpad pinch arrives as one) zooms about the pointer.
    page.keyboard.down("Control")
    for _ in range(5):
        page.mouse.wheel(0, -200)
    page.keyboard.up("Control")
    page.wait_for_timeout(200)
    assert float(graph.get_attribute("data-zoom") or 0) > before * 2
    assert page.evaluate("scrollY") == 0, "Ctrl + wheel scrolled the page"
    page.screenshot(path=str(shots / "graph_fanout_zoomed.png"))
    # A drag pans (and opens nothing).
    a = root.bounding_box()
    assert a is not None
    page.mouse.move(a["x"] + 20, a["y"] + a["height"] / 2)
    page.mouse.down()
    page.mouse.move(a["x"] + 80, a["y"] + a["height"] / 2 + 40, steps=6)
    page.mouse.up()
    b = root.bounding_box()
    assert b is not None and abs(b["x"] - a["x"] - 60) < 2 and abs(b["y"] - a["y"] - 40) < 2, (a, b)
    expect(page).to_have_url(kiok.url + f"/runs/{runs['fan']}")
    # Fit brings everything back; a click on a node opens its log.
    graph.get_by_role("button", name="Fit").click()
    expect(graph).to_have_attribute("data-zoom", f"{fit_zoom:.3f}")
    graph.get_by_role("button", name="Zoom in").click()
    graph.locator("a.node[data-task=join]").click()
    expect(page).to_have_url(kiok.url + f"/runs/{runs['fan']}/tasks/join")
    assert console.errors == []
    context.close()


def place_leaf_01_at_top(page: Any, graph: Any) -> dict[str, float]:
    """Zoom in, then pan (drags of at most 200 px) until leaf_01's centre is 3 px above the
    graph's box: the node is half visible. Returns the box."""
    graph.get_by_role("button", name="Fit").click()
    for _ in range(5):
        graph.get_by_role("button", name="Zoom in").click()
    box = graph.locator(".graph-box").bounding_box()
    assert box is not None
    leaf = graph.locator("a.node[data-task=leaf_01] rect").first
    for _ in range(20):
        lb = leaf.bounding_box()
        assert lb is not None
        left = (box["y"] - 3) - (lb["y"] + lb["height"] / 2)
        if abs(left) < 0.5:
            break
        step = max(-200.0, min(200.0, left))
        x = box["x"] + box["width"] * 0.8
        y = box["y"] + box["height"] / 2 - step / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x, y + step, steps=5)
        page.mouse.up()
    lb = leaf.bounding_box()
    assert lb is not None and lb["y"] + lb["height"] > box["y"] + 6, (lb, box)
    return dict(box)


def test_graph_clicks_keys_and_touch(
    kiok: Standalone, runs: dict[str, str], browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    fan = f"/runs/{runs['fan']}"
    context, page, console = open_page(browser, kiok, fan)
    graph = page.get_by_test_id("graph")
    expect(graph.locator("a.node")).to_have_count(LEAVES + 2)
    # A mouse press on a half-visible node opens it (the view does not jump at mousedown).
    box = place_leaf_01_at_top(page, graph)
    lb = graph.locator("a.node[data-task=leaf_01] rect").first.bounding_box()
    assert lb is not None
    page.screenshot(path=str(shots / "graph_half_visible.png"))
    page.mouse.click(lb["x"] + lb["width"] / 2, box["y"] + 3)
    expect(page).to_have_url(kiok.url + fan + "/tasks/leaf_01")
    # A node reached by Tab is brought into view.
    page.goto(kiok.url + fan)
    expect(graph.locator("a.node")).to_have_count(LEAVES + 2)
    box = place_leaf_01_at_top(page, graph)
    first = graph.locator("a.node").first
    assert not inside(first.locator("rect").first.bounding_box(), box), "the first node is in view already"
    graph.get_by_role("button", name="Fit").focus()
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.getAttribute('data-task')")
    assert focused, "Tab did not reach a node"
    page.wait_for_timeout(200)
    rect = graph.locator(f"a.node[data-task={focused}] rect").first.bounding_box()
    now = graph.locator(".graph-box").bounding_box()
    assert now is not None
    assert inside(rect, now), f"{focused} not brought into view: {rect} {now}"
    bar = page.locator("header.topbar").bounding_box()
    assert bar is not None
    screen = {"x": 0, "y": bar["height"], "width": 1280, "height": 800 - bar["height"]}
    assert inside(rect, screen), f"{focused} is off screen or under the top bar: {rect}"
    page.screenshot(path=str(shots / "graph_tab_into_view.png"))
    assert console.errors == []
    context.close()

    # A touch pan is followed by no click: the next Enter on a node still opens it.
    context, page, console = new_page(browser, has_touch=True)
    log_in(page, kiok, fan)
    graph = page.get_by_test_id("graph")
    expect(graph.locator("a.node")).to_have_count(LEAVES + 2)
    box = graph.locator(".graph-box").bounding_box()
    assert box is not None
    root = graph.locator("a.node[data-task=root] rect").first
    before = root.bounding_box()
    assert before is not None
    cdp = context.new_cdp_session(page)
    x, y = box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    for i in range(1, 7):
        cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x - 10 * i, "y": y}]}
        )
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    page.wait_for_timeout(200)
    after = root.bounding_box()
    assert after is not None and after["x"] < before["x"] - 30, ("the touch did not pan", before, after)
    graph.locator("a.node[data-task=join]").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(kiok.url + fan + "/tasks/join")
    context.close()

    # On a phone a vertical swipe over the graph scrolls the page; on a desktop the graph has it.
    context, page, console = open_page(browser, kiok, fan, viewport=PHONE)
    expect(page.get_by_test_id("graph").locator("a.node")).to_have_count(LEAVES + 2)
    assert page.locator(".graph-box").evaluate("b => getComputedStyle(b).touchAction") == "pan-y"
    context.close()


def test_one_duration_format(kiok: Standalone, runs: dict[str, str], browser: Any) -> None:
    context, page, _console = open_page(browser, kiok, f"/runs/{runs['fails']}")
    got = page.evaluate("""async () => {
      const src = document.querySelector("script[type=module]").src.replace("main.js", "format.js");
      const f = await import(src);
      const at = (ms) => f.duration(new Date(0).toISOString(), new Date(ms).toISOString());
      return [340, 7100, 55000, 666000, 3720000].map(at);
    }""")
    assert got == ["340 ms", "7.1 s", "55 s", "11 m 06 s", "1 h 02 m"]
    # No duration is "—", not "0 ms"; a re-run counts from its start, or (masters that did
    # not record it) from its request once the run runs again or has ended.
    got = page.evaluate("""async () => {
      const src = document.querySelector("script[type=module]").src.replace("main.js", "format.js");
      const f = await import(src);
      const t = (s) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
      const now = Date.UTC(2026, 0, 1, 0, 0, 100);
      const rerun = (state, startedAt, endedAt) => f.runDuration({ state, startedAt: t(0), endedAt,
        lastRerun: { requestedAt: t(40), startedAt } }, now);
      return [f.elapsed(null), f.elapsed(undefined), f.elapsed(0),
        rerun("SUCCESS", t(50), t(70)), rerun("SUCCESS", null, t(70)), rerun("RUNNING", null, null),
        rerun("PENDING", null, null), rerun("RUNNING", t(45), null)];
    }""")
    assert got == ["—", "—", "0 ms", "20 s", "30 s", "1 m 00 s", "waiting", "55 s"]
    context.close()


def test_dashboard_counts_a_rerun_from_its_start(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import Route, expect

    context, page, console = open_page(browser, kiok, "/settings/password")
    ago = page.evaluate("(s) => new Date(Date.now() - s * 1000).toISOString()", 3600)
    started = page.evaluate("(s) => new Date(Date.now() - s * 1000).toISOString()", 5)
    requested = page.evaluate("(s) => new Date(Date.now() - s * 1000).toISOString()", 9)
    fake = {
        "runId": "au_rerun-1",
        "dagId": "au_rerun",
        "state": "RUNNING",
        "createdAt": ago,
        "startedAt": ago,
        "endedAt": None,
        "waiting": None,
        "tasks": 2,
        "tasksDone": 1,
        "lastRerun": {"requestedAt": requested, "startedAt": started, "by": "admin"},
    }

    def dashboard(route: Route) -> None:
        body = route.fetch().json()
        body["running"] = [fake]
        route.fulfill(json=body)

    page.route("**/api/v1/dashboard*", dashboard)
    page.goto(kiok.url + "/")
    item = page.get_by_test_id("running").locator("li[data-run='au_rerun-1']")
    expect(item).to_contain_text("1 of 2 tasks done · for ")
    expect(item).to_contain_text(re.compile(r"for \d+(\.\d)? s$"))
    page.screenshot(path=str(shots / "dashboard_rerun_duration.png"))
    assert console.errors == []
    context.close()


def test_why_a_task_was_skipped(kiok: Standalone, runs: dict[str, str], browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    context, page, console = open_page(browser, kiok, f"/runs/{runs['fails']}")
    expect(page.locator("tr[data-task=after_boom]").get_by_test_id("task-skipped")).to_have_text(
        "skipped: upstream boom failed"
    )
    page.screenshot(path=str(shots / "run_skipped_reason.png"))
    page.locator("tr[data-task=after_boom] a").click()
    expect(page.get_by_test_id("log-skipped")).to_contain_text("Skipped: upstream boom failed")
    expect(page.get_by_test_id("log")).to_have_count(0)
    expect(page.get_by_text("(empty log)")).to_have_count(0)
    page.screenshot(path=str(shots / "log_skipped_reason.png"))
    assert console.errors == []
    context.close()


VERSIONED_V1 = """
dag: {id: au_ver}
tasks:
  - {id: a, script: 'exit 1'}
  - {id: c, script: 'true'}
  - {id: b, requires: [a], script: 'echo never'}
"""
#: v2 changes b's trigger rule and upstreams: a v1 run must still be explained and drawn by v1.
VERSIONED_V2 = """
dag: {id: au_ver}
tasks:
  - {id: a, script: 'exit 1'}
  - {id: c, script: 'true'}
  - {id: b, requires: [a, c], trigger_rule: all_failed, script: 'echo never'}
"""


def test_skipped_reason_and_graph_follow_the_runs_version(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    kiok.register(VERSIONED_V1)
    run_id = kiok.trigger("au_ver")
    assert kiok.wait_run(run_id, timeout_s=60)["tasks"]["b"]["state"] == "SKIPPED"
    kiok.register(VERSIONED_V2)
    context, page, console = open_page(browser, kiok, f"/runs/{run_id}")
    expect(page.locator("tr[data-task=b]").get_by_test_id("task-skipped")).to_have_text(
        "skipped: upstream a failed"
    )
    graph = page.get_by_test_id("graph")
    expect(graph.locator("a.node")).to_have_count(3)
    expect(graph.locator("path.edge")).to_have_count(1)  # a -> b, as v1 had it (v2 has 2)
    expect(page.get_by_test_id("graph-version-note")).to_have_count(0)
    page.screenshot(path=str(shots / "run_skipped_v1.png"))
    page.locator("tr[data-task=b] a").click()
    expect(page.get_by_test_id("log-skipped")).to_contain_text("Skipped: upstream a failed")
    # The run's version no longer kept: a generic reason, and the graph says whose edges it draws.
    page.route(
        "**/api/v1/dags/au_ver/versions/*",
        lambda route: route.fulfill(
            status=404, json={"error": {"code": "not_found", "message": "no such version"}}
        ),
    )
    page.goto(kiok.url + f"/runs/{run_id}")
    expect(page.locator("tr[data-task=b]").get_by_test_id("task-skipped")).to_have_text(
        "skipped: its trigger rule could not be met"
    )
    expect(page.get_by_test_id("graph-version-note")).to_contain_text("is no longer kept")
    expect(graph.locator("path.edge")).to_have_count(2)
    page.screenshot(path=str(shots / "run_skipped_version_gone.png"))
    page.goto(kiok.url + f"/runs/{run_id}/tasks/b")
    expect(page.get_by_test_id("log-skipped")).to_contain_text("Skipped: its trigger rule could not be met")
    # all_failed names only the upstreams that have ended.
    got = page.evaluate("""async () => {
      const src = document.querySelector("script[type=module]").src.replace("main.js", "skipped.js");
      const { skipReason } = await import(src);
      const spec = [{ id: "x", requires: ["a", "b", "c"], trigger_rule: "all_failed" }];
      const states = { a: { state: "SUCCESS" }, b: { state: "RUNNING" }, c: { state: "FAILED" } };
      return skipReason("x", states, spec);
    }""")
    assert got == "skipped: not every upstream failed (a (success)) (trigger rule all_failed)"
    console.errors.clear()  # the 404s
    context.close()


def test_a_late_me_answer_for_the_previous_user_is_dropped(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import Route, expect

    body = {"user": "late_me", "password": NOBODY_PW}
    assert kiok.api("POST", "/api/v1/iam/users", json=body).status_code == 201
    context, page, _ = new_page(browser)
    held: list[Route] = []

    def hold_first(route: Route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)  # admin's /me: answered only after late_me has logged in

    page.route("**/api/v1/me", hold_first)
    log_in(page, kiok, "/")
    for _ in range(TIMEOUT_MS // 20):  # Playwright routes requests while it waits
        if held:
            break
        page.wait_for_timeout(20)
    assert len(held) == 1
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("User").fill("late_me")
    page.get_by_label("Password").fill(NOBODY_PW)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("user")).to_have_text("late_me")
    allowed = {"runs:List": True, "dags:List": True, "cluster:Read": True}
    held[0].fulfill(json={"user": "admin", "groups": [], "allowed": allowed})
    # late_me's own answer: no policies, so "/" leads to Settings, and the nav has no other page.
    expect(page).to_have_url(re.compile(re.escape(kiok.url) + "/settings/[a-z-]+$"))
    page.wait_for_timeout(500)
    nav = page.get_by_label("Main")
    for name in ("Dashboard", "DAGs", "Cluster"):
        expect(nav.get_by_role("link", name=name)).to_have_count(0)
    expect(nav.get_by_role("link", name="Settings")).to_be_visible()
    page.screenshot(path=str(shots / "me_late_answer.png"))
    context.close()


def test_nav_hides_pages_the_user_may_not_read(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    body = {"user": "nobody", "password": NOBODY_PW}
    assert kiok.api("POST", "/api/v1/iam/users", json=body).status_code == 201
    context, page, console = open_page(browser, kiok, "/", user="nobody", password=NOBODY_PW)
    nav = page.get_by_label("Main")
    expect(nav.get_by_role("link", name="Settings")).to_be_visible()
    expect(page).to_have_url(re.compile(re.escape(kiok.url) + "/settings/[a-z-]+$"))
    for name in ("Dashboard", "DAGs", "Cluster"):
        expect(nav.get_by_role("link", name=name)).to_have_count(0)
    expect(page.locator(".error")).to_have_count(0)
    page.screenshot(path=str(shots / "nav_no_policy.png"))
    assert console.errors == []
    context.close()
