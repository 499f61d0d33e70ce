"""Fixes from the 22nd UI review, in a real browser against a real ``kiok standalone``: the Run
dialog (an emptied field keeps the default, every bad field is reported at that field before
sending, the master's refusal at the field it names, the buttons always in view), a pause
switch the user may not flip that looks it, a DAG the user may not read shown as its error
alone, the timeline's skip reason (the job list's), a killed task's signal, a forbidden run
read once, and the Register page's file input without a stray box."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import Standalone
from tests.e2e.test_ui_audit import open_page

SHORT = {"width": 1280, "height": 560}  # shorter than the Run form
READER = "s22-reader"
READER_PW = "S22-Reader-Pw-123"

PARAMS = """
dag:
  id: s22_params
  params:
    title: {type: string, default: quarterly}
    ratio: {type: number, default: 0.5, minimum: 0, maximum: 1}
    limit: {type: integer, default: 50, minimum: 1, maximum: 1000, description: Max rows}
    dry_run: {type: boolean, default: false}
    tags: {type: array, default: [a, b]}
    options: {type: object, default: {fmt: csv}}
    note: {type: string, default: none}
    tag: {type: string, pattern: '[a-z0-9-]+', description: Lowercase tag}
tasks:
  - {id: one, script: 'echo one'}
"""

FAILS = """
dag: {id: s22_fails}
tasks:
  - {id: start, script: 'echo start'}
  - {id: upload, requires: [start], script: 'exit 3'}
  - {id: report, requires: [upload], script: 'echo never'}
"""

SLOW = """
dag: {id: s22_slow}
tasks:
  - {id: wait, script: 'sleep 60'}
  - {id: then, requires: [wait], script: 'echo then'}
"""


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-s22a") / "kiok")
    node.start()
    for dag in (PARAMS, FAILS, SLOW):
        node.register(dag)
    # A reader of s22_fails alone: it may not pause it, nor read s22_params.
    read = ["dags:List", "dags:Read", "runs:List", "runs:Read", "logs:Read"]
    statement = {"Effect": "Allow", "Action": read, "Resource": ["dag/s22_fails", "dag/s22_fails/*"]}
    policy = {"policy": "s22-reader", "document": {"Statement": [statement]}}
    assert node.api("POST", "/api/v1/iam/policies", json=policy).status_code == 201
    user = {"user": READER, "password": READER_PW, "policies": ["s22-reader"]}
    assert node.api("POST", "/api/v1/iam/users", json=user).status_code == 201
    yield node
    node.stop()


def open_run_dialog(page: Any) -> Any:
    from playwright.sync_api import expect

    page.get_by_role("button", name="▶ Run").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("title")).to_be_focused()
    return dialog


def test_an_emptied_run_field_keeps_its_default(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    context, page, console = open_page(browser, kiok, "/dags/s22_params")
    dialog = open_run_dialog(page)
    title = dialog.get_by_label("title")
    expect(title).to_have_value("quarterly")
    title.fill("")
    dialog.get_by_label("ratio").fill("")
    dialog.get_by_label("tags").fill("")
    expect(title).to_have_attribute("placeholder", "default: quarterly")
    expect(dialog.get_by_label("ratio")).to_have_attribute("placeholder", "default: 0.5")
    expect(dialog.get_by_label("tags")).to_have_attribute("placeholder", 'default: ["a","b"]')
    expect(dialog.locator("#param-title-hint")).to_contain_text("empty: the default")
    dialog.get_by_label("tag", exact=True).fill("weekly")
    page.screenshot(path=str(shots / "s22_trigger_cleared.png"))
    dialog.get_by_role("button", name="Start run").click()
    page.wait_for_url("**/runs/s22_params-*")
    run_id = page.url.rsplit("/", 1)[1]
    # Only the one param given: title, ratio and tags keep the DAG's defaults.
    assert kiok.run(run_id)["args"] == {"tag": "weekly"}
    assert console.errors == []
    context.close()


def test_run_form_reports_every_bad_field_at_that_field(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    context, page, console = open_page(browser, kiok, "/dags/s22_params", viewport=SHORT)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and "/runs" in r.url else None)
    dialog = open_run_dialog(page)
    start = dialog.get_by_role("button", name="Start run")
    close = dialog.get_by_role("button", name="Close")
    # The form is taller than the window: its fields scroll, the buttons stay in view.
    expect(start).to_be_in_viewport()
    expect(close).to_be_in_viewport()

    dialog.get_by_label("limit").fill("abc")  # a number field shows what was typed
    dialog.get_by_label("ratio").fill("2")
    dialog.get_by_label("tags").fill("[1, 2")
    start.click()
    bad = {
        "limit": 'not a number: "abc"',
        "ratio": "2 is above maximum 1",
        "tags": "not valid JSON",
        "tag": "required: the DAG gives it no default",
    }
    for name, problem in bad.items():
        expect(dialog.locator(f"#param-{name}")).to_have_attribute("aria-invalid", "true")
        expect(dialog.locator(f"#param-{name}-hint")).to_contain_text(problem)
    expect(dialog.get_by_test_id("trigger-problems")).to_have_text("4 fields to correct")
    expect(dialog.locator(".error")).to_have_count(0)  # no general box: each at its field
    expect(dialog.get_by_label("ratio")).to_be_focused()  # the first field to correct
    expect(dialog.locator("#param-ratio-hint")).to_be_in_viewport()
    expect(dialog.get_by_label("limit")).to_have_value("abc")
    expect(start).to_be_in_viewport()
    expect(close).to_be_in_viewport()
    page.screenshot(path=str(shots / "s22_trigger_problems.png"))
    assert posts == [], "sent although the page knew the fields were wrong"

    # A field put right loses its mark; what only the master checks (a pattern) comes back
    # at the field it names.
    dialog.get_by_label("limit").fill("1.5")
    expect(dialog.locator("#param-limit")).not_to_have_attribute("aria-invalid", "true")
    start.click()
    expect(dialog.locator("#param-limit-hint")).to_contain_text("not a whole number: 1.5")
    for name, value in (("limit", "7"), ("ratio", "0.25"), ("tags", '["x"]'), ("tag", "Bad Tag!")):
        dialog.get_by_label(name, exact=True).fill(value)
    start.click()
    expect(dialog.locator("#param-tag-hint")).to_contain_text("does not match pattern")
    expect(dialog.locator("#param-tag")).to_have_attribute("aria-invalid", "true")
    expect(dialog.get_by_label("tag", exact=True)).to_be_focused()
    expect(dialog.locator("#param-tag-hint")).to_be_in_viewport()
    console.take("status of 400")
    assert len(posts) == 1
    page.screenshot(path=str(shots / "s22_trigger_server_refusal.png"))

    dialog.get_by_label("tag", exact=True).fill("weekly")
    start.click()
    page.wait_for_url("**/runs/s22_params-*")
    run_id = page.url.rsplit("/", 1)[1]
    assert kiok.run(run_id)["args"] == {"limit": 7, "ratio": 0.25, "tags": ["x"], "tag": "weekly"}
    assert console.errors == []
    context.close()


def test_pause_switch_the_user_may_not_flip_looks_disabled(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    context, page, console = open_page(browser, kiok, "/dags", user=READER, password=READER_PW)
    for where in ("dags", "dag"):
        if where == "dag":
            page.goto(kiok.url + "/dags/s22_fails")
        toggle = page.get_by_role("switch", name="s22_fails active")
        expect(toggle).to_be_disabled()
        label = page.locator("label.switch", has=toggle)
        expect(label).to_have_attribute("title", re.compile("do not allow pausing"))
        expect(label).to_have_css("cursor", "default")
        expect(label.locator(".track")).to_have_css("opacity", "0.45")
        page.screenshot(path=str(shots / f"s22_reader_switch_{where}.png"))
    assert console.errors == []
    context.close()

    # The admin's switch is not muted.
    context, page, console = open_page(browser, kiok, "/dags/s22_fails")
    toggle = page.get_by_role("switch", name="s22_fails active")
    expect(toggle).to_be_enabled()
    expect(page.locator("label.switch")).to_have_css("cursor", "pointer")
    expect(page.locator("label.switch .track")).to_have_css("opacity", "1")
    context.close()


def test_a_dag_the_user_may_not_read_shows_only_the_error(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    from playwright.sync_api import expect

    context, page, console = open_page(browser, kiok, "/dags/s22_params", user=READER, password=READER_PW)
    expect(page.locator(".error")).to_contain_text("may not dags:Read")
    expect(page.locator(".error")).to_contain_text("Not allowed")
    page.wait_for_load_state("networkidle")
    expect(page.get_by_role("link", name="▦ Grid")).to_have_count(0)
    expect(page.get_by_role("heading", name="Runs")).to_have_count(0)
    expect(page.get_by_role("switch")).to_have_count(0)
    expect(page.locator(".error")).to_have_count(1)
    page.screenshot(path=str(shots / "s22_dag_forbidden.png"))
    console.errors.clear()  # the 403s
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


def test_a_run_the_user_may_not_read_is_asked_for_once(kiok: Standalone, browser: Any) -> None:
    from playwright.sync_api import expect

    run_id = kiok.trigger("s22_params", {"tag": "once"})
    context, page, console = open_page(browser, kiok, "/dags", user=READER, password=READER_PW)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if f"/api/v1/runs/{run_id}" in r.url else None)
    page.goto(kiok.url + f"/runs/{run_id}")
    expect(page.locator(".error")).to_contain_text("may not runs:Read")
    page.wait_for_timeout(4000)  # not a wait for something: more than two polling periods pass
    assert len(asked) == 1, asked
    console.errors.clear()  # the 403
    context.close()


def test_register_file_input_has_no_stray_box(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    context, page, console = open_page(browser, kiok, "/dags/register")
    picker = page.locator(".file-pick input[type=file]")
    expect(picker).to_be_visible()
    expect(picker).to_have_css("background-color", "rgba(0, 0, 0, 0)")
    expect(picker).to_have_css("border-top-style", "none")
    page.locator(".file-pick").screenshot(path=str(shots / "s22_register_file.png"))
    assert console.errors == []
    context.close()
