"""Pages of what is unknown or not allowed, in a real browser against a real ``kiok
standalone``: an unknown DAG, or one the user may not read, shows its error alone (no Grid,
▶ Run, runs nor switch); a run the user may not read is asked for once, not polled; a run that
does not load is not asked about (no ``/me`` request beside its 404)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import Standalone
from tests.e2e.test_ui_audit import log_in, new_page, open_page
from tests.e2e.test_ui_run_dialog import TYPED_PARAMS

DESKTOP = {"width": 1366, "height": 768}
READER = "s22-reader"
READER_PW = "S22-Reader-Pw-123"
QUICK = """
dag: {id: s24_quick}
tasks:
  - {id: t, script: 'true'}
"""


def add_reader(node: Standalone) -> None:
    """A user, ``READER``, who may read ``s22_fails`` alone: it may not pause it, nor read
    any other DAG."""
    read = ["dags:List", "dags:Read", "runs:List", "runs:Read", "logs:Read"]
    statement = {"Effect": "Allow", "Action": read, "Resource": ["dag/s22_fails", "dag/s22_fails/*"]}
    policy = {"policy": "s22-reader", "document": {"Statement": [statement]}}
    assert node.api("POST", "/api/v1/iam/policies", json=policy).status_code == 201
    user = {"user": READER, "password": READER_PW, "policies": ["s22-reader"]}
    assert node.api("POST", "/api/v1/iam/users", json=user).status_code == 201


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-error-pages") / "kiok")
    node.start()
    node.register(TYPED_PARAMS)
    add_reader(node)
    yield node
    node.stop()


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
