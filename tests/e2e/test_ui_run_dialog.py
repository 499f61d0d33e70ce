"""The ▶ Run button and its dialog, in a real browser against a real ``kiok standalone``: the
dialog's focus (its first field, or Start run when the DAG takes no params, Enter then starting
the run); an emptied field keeping the DAG's default; every bad field reported at that field
before anything is sent, and the master's refusal at the field it names, the dialog's buttons
staying in view on a window shorter than the form; Run disabled on a paused DAG, saying why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import Standalone
from tests.e2e.test_ui_audit import open_page

SHORT = {"width": 1280, "height": 560}  # shorter than the Run form

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

#: A param of every type, with bounds and a pattern; ``tag`` has no default.
TYPED_PARAMS = """
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


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-run-dialog") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
    node.start()
    node.register(TYPED_PARAMS)
    yield node
    node.stop()


def open_run_dialog(page: Any) -> Any:
    from playwright.sync_api import expect

    page.get_by_role("button", name="▶ Run").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("title")).to_be_focused()
    return dialog


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
