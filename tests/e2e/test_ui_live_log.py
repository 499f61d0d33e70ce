"""A running task's live log, in a real browser against a real ``kiok standalone``: scrolled
up, it says it is not following and offers Jump to end, which follows the log again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import Standalone
from tests.e2e.test_ui_audit import open_page

CHATTY = """
dag: {id: rv_chatty}
tasks:
  - {id: chatter, script: 'for i in $(seq 1 300); do echo "line $i"; done; sleep 60'}
"""


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-live-log") / "kiok")
    node.start()
    yield node
    node.stop()


def test_scrolled_up_log_says_it_is_not_following(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    kiok.register(CHATTY)
    run_id = kiok.trigger("rv_chatty")
    context, page, console = open_page(browser, kiok, f"/runs/{run_id}/tasks/chatter")
    status = page.get_by_test_id("log-status")
    expect(status).to_contain_text("300 lines", timeout=60_000)
    log = page.get_by_test_id("log")
    expect(status).to_contain_text("Live")
    expect(status).not_to_contain_text("not following")
    log.evaluate("el => { el.scrollTop = 0; }")
    expect(status).to_contain_text("not following")
    jump = page.get_by_role("button", name="Jump to end")
    expect(jump).to_be_visible()
    page.screenshot(path=str(shots / "log_not_following.png"))
    jump.click()
    expect(status).not_to_contain_text("not following")
    expect(jump).to_have_count(0)
    assert log.evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight") < 8
    kiok.api("POST", f"/api/v1/runs/{run_id}/cancel")
    kiok.wait_run(run_id, timeout_s=60)
    assert console.errors == []
    context.close()
