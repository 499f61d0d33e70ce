"""The admin UI end to end: a real ``kiok standalone`` driven by Debian's chromium through
Playwright (sync API, plain ``def`` tests). Without chromium the browser tests skip locally
and fail under ``CI=true``. ``UI_SCREENSHOTS=1`` writes the screenshots of
docs/ui.md to ``docs/ui/`` (1280×800); otherwise they go to a temporary directory."""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.e2e.conftest import TIMEOUT_MS, VIEWPORT, Console

DEMO = """
dag:
  id: ui_demo
  name: UI demo
  description: Extract one region, transform it, load it twice, report.
  schedule: "0 2 * * *"
  timezone: Europe/Berlin
  params:
    region: {default: eu, enum: [eu, us], description: where the data lives}
    limit: {type: integer, minimum: 1, maximum: 1000, default: 100}
    tag: {type: string, pattern: "[a-z0-9-]+", default: nightly}
tasks:
  - id: extract
    script: 'echo "extracting ${params.region} limit ${params.limit}"; echo "<b>not markup</b>"'
  - {id: transform, requires: [extract], type: python, script: 'print("transforming", 42)'}
  - {id: load_warehouse, requires: [transform], script: 'echo loaded'}
  - {id: load_search, requires: [transform], script: 'echo indexed'}
  - {id: report, requires: [load_warehouse, load_search], script: 'echo "report for ${params.tag}"'}
"""
SLOW = """
dag: {id: ui_slow, description: Ticks for two minutes unless cancelled}
tasks:
  - {id: ticker, script: 'for i in $(seq 1 600); do echo "tick $i"; sleep 0.2; done'}
"""


@pytest.fixture(scope="module")
def ui_kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    """A fresh standalone whose admin still has the first-login password (admin/admin, with
    the forced change): the browser test changes it to ``ADMIN_PASSWORD``."""
    node = Standalone(
        tmp_path_factory.mktemp("ui") / "kiok",
        {"KIOK_IAM_ADMIN_PASSWORD": "", "KIOK_WORKER_TASK_SLOTS": "4"},
    )
    node.start()
    yield node
    node.stop()


def test_shell_assets_and_api_paths(ui_kiok: Standalone) -> None:
    """No browser needed: what the admin port answers for the UI, and what it still answers
    as the API."""
    url = ui_kiok.url
    shell = httpx.get(url + "/")
    assert shell.status_code == 200
    assert shell.headers["content-type"].startswith("text/html")
    assert shell.headers["content-security-policy"].startswith("default-src 'self'")
    assert shell.headers["cache-control"] == "no-cache"
    scripts = re.findall(r"<script[^>]*>", shell.text)
    assert scripts and all(' src="/ui/' in tag for tag in scripts)  # no inline script
    assert "style=" not in shell.text and "<style" not in shell.text
    for deep in ("/dags/anything", "/runs/x-1-1/tasks/t", "/cluster", "/settings/users"):
        r = httpx.get(url + deep)
        assert r.status_code == 200 and r.text == shell.text, deep
    main_js = re.search(r'src="(/ui/[0-9a-f]{12}/js/main\.js)"', shell.text)
    assert main_js is not None
    asset = httpx.get(url + main_js.group(1), headers={"Accept-Encoding": "gzip"})
    assert asset.status_code == 200
    assert asset.headers["content-type"].startswith("text/javascript")
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert asset.headers["content-encoding"] == "gzip"
    assert "import" in asset.text
    stale = httpx.get(re.sub(r"/ui/[0-9a-f]{12}/", "/ui/000000000000/", url + main_js.group(1)))
    assert stale.status_code == 200 and stale.headers["cache-control"] == "no-cache"
    assert httpx.get(url + "/ui/x/vendor/nope.js").status_code == 404
    # Only the files of kiok/ui/static: no way out of it, and no shell under /ui/.
    host = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    for raw in (
        "/ui/x/../assets.py",
        "/ui/x/..%2Fassets.py",
        "/ui/x/%2e%2e/routes.py",
        "/ui/x/%2E%2E%2F__init__.py",
        "/ui/x/js/../../assets.py",
        "/ui/x//etc/passwd",
        "/ui/x/%2Fetc%2Fpasswd",
        "/ui/x/index.html",
    ):
        host.request("GET", raw)
        answer = host.getresponse()
        body = answer.read()
        assert answer.status == 404 and b"not_found" in body, (raw, answer.status, body[:200])
    host.close()
    # The API and the probes keep their answers.
    missing = httpx.get(url + "/api/v1/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert httpx.get(url + "/api/v1/dags").status_code == 401
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(url + "/cluster/health").headers["content-type"] == "application/json"
    assert httpx.post(url + "/dags/anything").status_code == 404


def test_ui_end_to_end(ui_kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    url = ui_kiok.url
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    console = Console()
    page.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console.errors.append(f"uncaught: {e}"))

    # Log in with the first-login password: the UI insists on a new one first.
    page.goto(url + "/")
    expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    expect(page.get_by_role("heading", name="Log in to kiok")).to_be_visible()
    page.screenshot(path=str(shots / "login.png"))
    page.get_by_label("User").fill("admin")
    page.get_by_label("Password").fill("admin")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    page.get_by_label("Current password").fill("admin")
    page.get_by_label("New password", exact=True).fill(ADMIN_PASSWORD)
    page.get_by_label("New password, again").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    page.get_by_label("Main").get_by_role("link", name="DAGs").click()
    expect(page.get_by_text("No DAGs registered yet.")).to_be_visible()
    expect(page.get_by_test_id("user")).to_have_text("admin")

    # The harness logs in with the new password to register the DAGs.
    ui_kiok.register(DEMO)
    ui_kiok.register(SLOW)
    first = ui_kiok.trigger("ui_demo")
    ui_kiok.wait_run(first)

    # A session that is gone (here: a new tab state) sends you to login, then back.
    page.evaluate("sessionStorage.clear()")
    page.goto(url + "/dags/ui_demo")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fdags%2Fui_demo$"))
    page.get_by_label("User").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(url + "/dags/ui_demo")
    expect(page.locator("table a", has_text=first)).to_be_visible()

    # The DAG list: the DAG, its schedule, its last run as a square with its state.
    page.get_by_label("Main").get_by_role("link", name="DAGs").click()
    row = page.locator("tr[data-dag=ui_demo]")
    expect(row).to_contain_text("at 02:00 every day, Europe/Berlin")
    expect(row.locator(".square[data-state=SUCCESS]")).to_have_count(1)
    expect(row.locator(".square")).to_have_attribute("title", re.compile("^SUCCESS"))

    # Run with params: a value the server refuses is shown at its field, then a good run.
    row.get_by_role("button", name="Run ui_demo").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("region")).to_have_value('"eu"')
    expect(dialog.get_by_label("limit")).to_have_value("100")
    dialog.get_by_label("tag").fill("Not Valid!")
    dialog.get_by_role("button", name="Start run").click()
    expect(dialog.locator(".field-error")).to_contain_text("Not Valid!")
    console.take("status of 400")
    page.screenshot(path=str(shots / "trigger.png"))
    dialog.get_by_label("tag").fill("weekly")
    dialog.get_by_label("region").select_option(label="us")
    dialog.get_by_label("limit").fill("7")
    dialog.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(re.compile(r"/runs/ui_demo-"))
    run_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("[data-testid=run-state] [data-state=SUCCESS]")).to_be_visible()
    expect(page.locator("svg.graph a.node[data-state=SUCCESS]")).to_have_count(5)
    expect(page.locator(".facts")).to_contain_text('region="us"')
    expect(page.locator(".facts")).to_contain_text("manual by admin")  # who triggered it
    assert ui_kiok.run(run_id)["args"] == {"region": "us", "limit": 7, "tag": "weekly"}
    page.screenshot(path=str(shots / "run.png"))

    # A task's log from the job list: the output as text, never as markup.
    page.locator("tr[data-task=extract]").get_by_role("link", name="extract").click()
    log = page.locator("pre.log")
    expect(log).to_contain_text("extracting us limit 7")
    expect(log).to_contain_text("<b>not markup</b>")
    expect(log.locator("b")).to_have_count(0)
    expect(page.get_by_test_id("log-status")).to_contain_text("Complete")

    # A long run: its log is live, can be paused and resumed; then cancel it.
    slow = ui_kiok.trigger("ui_slow")
    page.goto(url + f"/runs/{slow}/tasks/ticker")  # a reload: the session resumes
    expect(log).to_contain_text("tick 3")
    expect(page.get_by_test_id("log-status")).to_contain_text("Live")
    page.get_by_role("button", name="Paused").click()
    expect(page.get_by_test_id("log-status")).to_contain_text("Paused")
    expect(page.get_by_role("button", name="Paused")).to_have_attribute("aria-pressed", "true")
    page.get_by_role("button", name="Live").click()
    expect(log).to_contain_text("tick 12")
    page.screenshot(path=str(shots / "log.png"))
    page.get_by_label("Breadcrumb").get_by_role("link", name=slow).click()
    expect(page.locator("[data-testid=run-state] [data-state=RUNNING]")).to_be_visible()
    page.get_by_role("button", name="Cancel run").click()
    page.get_by_role("button", name="Yes, cancel").click()
    expect(page.locator("[data-testid=run-state] [data-state=CANCELLED]")).to_be_visible()
    expect(page.locator("tr[data-task=ticker] [data-state=CANCELLED]")).to_be_visible()

    # The list again, with both runs, in the light and the dark theme; then log out.
    page.get_by_label("Main").get_by_role("link", name="DAGs").click()
    expect(page.locator("tr[data-dag=ui_demo] .square")).to_have_count(2)
    expect(page.locator("tr[data-dag=ui_slow] .square[data-state=CANCELLED]")).to_have_count(1)
    page.screenshot(path=str(shots / "dags.png"))
    page.emulate_media(color_scheme="dark")
    page.goto(url + f"/runs/{run_id}")
    expect(page.locator("svg.graph a.node[data-state=SUCCESS]")).to_have_count(5)
    page.screenshot(path=str(shots / "run-dark.png"))
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to kiok")).to_be_visible()

    context.close()
    assert console.errors == []
