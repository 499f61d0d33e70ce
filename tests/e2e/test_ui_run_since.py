"""The run page in a real browser polls a running run by version (``?since=``) and keeps
its job list right as tasks change one at a time, against a real ``kiok standalone``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.e2e.test_ui_grid_cluster import open_page

GATED = ("g1", "g2", "g3")


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-since") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
    node.start()
    yield node
    node.stop()


def test_run_page_polls_what_changed(kiok: Standalone, browser: Any, task_tmp_path: Path) -> None:
    from playwright.sync_api import expect

    tasks = "".join(
        f"  - {{id: {g}, script: 'while [ ! -f {task_tmp_path}/{g} ]; do sleep 0.05; done'}}\n" for g in GATED
    )
    after_g1 = "  - {id: after, requires: [g1], script: 'true'}\n"
    kiok.register(f"dag: {{id: ui_since, params: {{note: none}}}}\ntasks:\n{tasks}{after_g1}")
    run_id = kiok.trigger("ui_since", {"note": "kept"})
    context, page, console = open_page(browser, kiok, "admin", ADMIN_PASSWORD, f"/runs/{run_id}")
    reads: list[str] = []
    page.on("request", lambda r: reads.append(r.url) if f"/api/v1/runs/{run_id}" in r.url else None)
    for g in GATED:
        expect(page.locator(f"tr[data-task={g}]")).to_contain_text("RUNNING")
    after = page.locator("tr[data-task=after]")
    expect(after.get_by_test_id("task-waiting")).to_contain_text("g1")

    args = page.get_by_text('note="kept"')
    expect(args).to_be_visible()
    for g in GATED:  # one task at a time: the page shows each change, and what follows from it
        (task_tmp_path / g).touch()
        expect(page.locator(f"tr[data-task={g}]")).to_contain_text("SUCCESS")
        if g != GATED[-1]:  # read by version (the run still runs), which leaves out the args
            expect(args).to_be_visible()
    expect(after).to_contain_text("SUCCESS")
    expect(page.get_by_test_id("run-state")).to_contain_text("SUCCESS")
    for g in GATED:
        expect(page.locator(f"tr[data-task={g}]")).to_contain_text("SUCCESS")

    assert any("since=" in url for url in reads), reads  # it polled by version
    context.close()
    assert console.errors == []
