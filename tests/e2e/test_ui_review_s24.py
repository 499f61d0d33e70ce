"""Fixes from a third review of the UI, in a real browser against a real ``kiok standalone``:
the Source tab's version time (the version's own, shown as every other time); the cluster
page's Revoke confirm and refusals wrapping within the page at 1366 and 390 px; cluster
actions not offered without their policies; the dashboard chart saying "runs created" and its
time axis evenly spaced; Cancel run leaving the focus on a notice; the re-run notice gone once
the re-run has ended; no failing request for an unknown run's permissions."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.e2e.test_ui_audit import inside, log_in, new_page

PW = "Review-S24-Pw-123"
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
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
#: How far the page is wider than the window (0: not at all).
OVERFLOW = "() => document.documentElement.scrollWidth - innerWidth"


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-review-s24") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
    node.start()
    yield node
    node.stop()


def add_user(kiok: Standalone, user: str, actions: list[str], resource: str = "*") -> None:
    policy = {"Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}]}
    r = kiok.api("POST", "/api/v1/iam/policies", json={"policy": f"{user}-policy", "document": policy})
    assert r.status_code == 201, r.text
    body = {"user": user, "password": PW, "policies": [f"{user}-policy"]}
    r = kiok.api("POST", "/api/v1/iam/users", json=body)
    assert r.status_code == 201, r.text


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


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1366", "390"])
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


#: Its task ignores SIGTERM, so a cancelled run goes on for the 5 s grace before SIGKILL.
STUBBORN = """
dag: {id: s24_stubborn}
tasks:
  - {id: hold, script: 'trap "" TERM; sleep 600'}
"""
#: Fails after 3 s: a re-run runs for a while, then fails again.
SLOW_FAIL = """
dag: {id: s24_slow_fail}
tasks:
  - {id: ok, script: 'true'}
  - {id: boom, requires: [ok], script: 'sleep 8; exit 1'}
"""


def test_cancel_confirmed_by_keyboard_leaves_the_focus_on_a_notice(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    """Before: after Enter on "Yes, cancel" the focus fell to <body> and nothing said what was done."""
    from playwright.sync_api import expect

    kiok.register(STUBBORN)
    run_id = kiok.trigger("s24_stubborn")
    kiok.wait_for(lambda: kiok.run(run_id)["tasks"]["hold"]["state"] == "RUNNING", 60, "the task to start")
    context, page, console = new_page(browser, viewport=DESKTOP)
    log_in(page, kiok, f"/runs/{run_id}")
    cancel = page.get_by_role("button", name="Cancel run")
    cancel.focus()
    page.keyboard.press("Enter")
    yes = page.get_by_role("button", name="Yes, cancel")
    expect(yes).to_be_focused()
    page.keyboard.press("Enter")
    notice = page.get_by_test_id("run-notice")
    expect(notice).to_have_text("Cancel requested: the running tasks are being stopped.")
    expect(notice).to_be_focused()
    expect(notice).to_have_attribute("role", "status")
    expect(cancel).to_have_count(0)  # requested once: not offered again
    page.screenshot(path=str(shots / "s24-cancel-requested.png"))
    # The run ends (SIGKILL after the grace): the notice goes, the focus is on the button back
    # in its place.
    expect(page.get_by_test_id("run-state")).to_contain_text("CANCELLED", timeout=30_000)
    expect(notice).to_have_count(0)
    expect(page.get_by_role("button", name="Re-run cancelled")).to_be_focused()
    page.screenshot(path=str(shots / "s24-cancel-done.png"))
    context.close()
    assert console.errors == []


def test_the_rerun_notice_goes_once_the_rerun_has_ended(kiok: Standalone, browser: Any, shots: Path) -> None:
    """Before: "Re-run started." stayed after the re-run had failed."""
    from playwright.sync_api import expect

    kiok.register(SLOW_FAIL)
    run_id = kiok.trigger("s24_slow_fail")
    assert kiok.wait_run(run_id, timeout_s=60)["state"] == "FAILED"
    context, page, console = new_page(browser, viewport=DESKTOP)
    log_in(page, kiok, f"/runs/{run_id}")
    rerun = page.get_by_role("button", name="Re-run failed")
    rerun.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Yes, re-run")).to_be_focused()
    page.keyboard.press("Enter")
    notice = page.get_by_test_id("run-notice")
    expect(notice).to_have_text("Re-run started.")
    expect(notice).to_be_focused()
    expect(page.get_by_test_id("run-state")).to_contain_text("RUNNING")
    page.screenshot(path=str(shots / "s24-rerun-started.png"))
    expect(page.get_by_test_id("run-state")).to_contain_text("FAILED", timeout=30_000)
    expect(notice).to_have_count(0)
    expect(rerun).to_be_focused()
    page.screenshot(path=str(shots / "s24-rerun-ended.png"))
    context.close()
    assert console.errors == []


def test_an_unknown_run_is_not_asked_about(kiok: Standalone, browser: Any, shots: Path) -> None:
    """Before: /runs/nope asked /me?run=nope too, a 400 next to the run's 404."""
    from playwright.sync_api import expect

    context, page, console = new_page(browser, viewport=DESKTOP)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/api/v1/me?" in r.url else None)
    log_in(page, kiok, "/runs/nope")
    expect(page.get_by_role("alert")).to_contain_text("Could not load the run")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(shots / "s24-unknown-run.png"))
    console.take("status of 404")
    assert console.errors == []
    assert asked == []
    # A run that loads is asked about, once.
    kiok.register(QUICK)  # unchanged if registered already
    run_id = kiok.trigger("s24_quick")
    kiok.wait_run(run_id, timeout_s=60)
    page.goto(kiok.url + f"/runs/{run_id}")
    expect(page.get_by_role("link", name="Run log")).to_be_visible()
    assert [u for u in asked if f"run={run_id}" in u] and len(asked) == 1, asked
    context.close()
    assert console.errors == []
