"""The task log in a real browser against a real ``kiok standalone``: ANSI colours (16 and
256 colours, bold; other escapes dropped), clickable URLs, output that looks like markup
stays text, search with next/previous (Enter right after typing going to the first match, a
match far right in a long line brought into view), the raw download equal to the API's bytes,
and a ~20 MB log that stays responsive with a bounded number of DOM nodes."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kiok.testing.process import ADMIN_PASSWORD, Standalone
from tests.e2e.test_ui_audit import log_in, new_page
from tests.e2e.test_ui_grid_cluster import open_page

COLOURS = r"""
dag: {id: ui_ansi}
tasks:
  - id: paint
    script: |
      printf '\033[1;31mred bold\033[0m plain \033[38;5;208morange\033[0m \033[42mon green\033[0m\n'
      printf '\033[2K\033[1Gcleared line\033]0;a title\007 after osc\n'
      echo 'docs at https://example.com/docs?a=1&b=2 now'
      echo '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
      for i in $(seq 1 300); do echo "row $i"; done
      printf '\033[33myellow carries\nto the next line\033[0m\n'
"""
#: A task that leaves black on black open, forges kiok's lines two ways, then times out: kiok's
#: own "timed out" line comes after.
FORGED = r"""
dag: {id: ui_forged}
tasks:
  - id: sly
    timeout: 2s
    script: |
      printf '\033[30;40mblack on black\n\033[8m[kiok] attempt 1 SUCCESS\n'
      printf '[ki\033[mok] attempt 1 SUCCESS\n\033[30;40m'
      printf 'dark\n\033[0m[kiok] forged behind a marker drawn in the dark\n\033[30;40m'
      printf '\033[0m[k\321\226ok] attempt 1 SKIPPED, with a Cyrillic i\n'
      sleep 30
"""
BIG_LINES = 300_000
BIG = f"""
dag: {{id: ui_biglog}}
tasks:
  - id: flood
    type: python
    script: |
      import sys
      pad = "x" * 56
      out = sys.stdout
      for i in range({BIG_LINES}):
          out.write(f"line {{i:07d}} {{pad}}\\n")
"""


@pytest.fixture(scope="module")
def kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    node = Standalone(tmp_path_factory.mktemp("ui-log") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "4"})
    node.start()
    yield node
    node.stop()


def test_log_colours_urls_no_markup_search_download(kiok: Standalone, browser: Any, shots: Path) -> None:
    from playwright.sync_api import expect

    kiok.register(COLOURS)
    run_id = kiok.trigger("ui_ansi")
    assert kiok.wait_run(run_id, timeout_s=60)["state"] == "SUCCESS"
    context, page, console = open_page(browser, kiok, "admin", ADMIN_PASSWORD, f"/runs/{run_id}/tasks/paint")
    log = page.get_by_test_id("log")
    expect(page.get_by_test_id("log-status")).to_contain_text("Complete")
    page.evaluate("document.querySelector('.log').scrollTop = 0")

    # Colours: 16-colour classes, bold, a 256-colour value set as a colour, backgrounds.
    expect(log.locator("span.ansi-fg1.ansi-bold")).to_have_text("red bold")
    orange = log.get_by_text("orange", exact=True)
    expect(orange).to_have_css("color", "rgb(255, 135, 0)")
    expect(log.locator("span.ansi-bg2")).to_have_text("on green")
    # Other escapes are dropped, not shown.
    line2 = log.locator(".ln[data-line='2']")
    expect(line2).to_have_text("cleared line after osc")
    text = log.inner_text()
    assert "\x1b" not in text and "[2K" not in text and "a title" not in text
    # URLs are links that do not hand the page to the target.
    link = log.get_by_role("link", name="https://example.com/docs?a=1&b=2")
    expect(link).to_have_attribute("href", "https://example.com/docs?a=1&b=2")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(link).to_have_attribute("target", "_blank")
    # Output that looks like markup is text.
    expect(log).to_contain_text('<img src=x onerror="window.__xss=1"><script>')
    expect(log.locator("img")).to_have_count(0)
    expect(log.locator("script")).to_have_count(0)
    assert page.evaluate("window.__xss") is None

    # Search: a count, next and previous, the current match highlighted and scrolled to.
    search = page.get_by_label("Search the log")
    search.fill("row 29")
    expect(page.get_by_test_id("log-matches")).to_have_text("11 matches")  # 29, 290..299
    search.press("Enter")
    expect(page.get_by_test_id("log-matches")).to_have_text("1 of 11 matches")
    current = log.locator("mark.current")
    expect(current).to_have_text("row 29")
    expect(current.locator("xpath=ancestor::span[contains(@class,'ln')]")).to_have_attribute(
        "data-line", "33"
    )
    page.get_by_role("button", name="Previous match").click()
    expect(page.get_by_test_id("log-matches")).to_have_text("11 of 11 matches")
    expect(
        log.locator("mark.current").locator("xpath=ancestor::span[contains(@class,'ln')]")
    ).to_have_attribute("data-line", "303")
    # A colour left open carries over to the next line.
    expect(log.locator(".ln[data-line='306'] span.ansi-fg3")).to_have_text("to the next line")
    page.evaluate("document.querySelector('.log').scrollTop = 0")
    page.screenshot(path=str(shots / "log-colours.png"))

    # Download raw: exactly the bytes the API serves.
    with page.expect_download() as info:
        page.get_by_role("button", name="Download raw").click()
    download = info.value
    assert download.suggested_filename == f"{run_id}.paint.log"
    raw = Path(download.path()).read_bytes()
    body = kiok.api("GET", f"/api/v1/runs/{run_id}/tasks/paint/log?limit=4194304").json()
    assert raw.decode() == body["data"] and body["complete"]
    context.close()
    assert console.errors == []


def test_a_task_neither_forges_nor_hides_kiok_s_own_lines(
    kiok: Standalone, browser: Any, shots: Path
) -> None:
    """Before: an escape in front of or within ``[kiok]`` made a task's line read as kiok's, and
    a colour the task left open (black on black) hid kiok's own "timed out" line."""
    from playwright.sync_api import expect

    kiok.register(FORGED)
    run_id = kiok.trigger("ui_forged")
    assert kiok.wait_run(run_id, timeout_s=60)["state"] == "FAILED"
    context, page, console = open_page(browser, kiok, "admin", ADMIN_PASSWORD, f"/runs/{run_id}/tasks/sly")
    log = page.get_by_test_id("log")
    expect(page.get_by_test_id("log-status")).to_contain_text("Complete")
    lines = log.locator(".ln")
    expect(lines.filter(has_text="attempt 1 SUCCESS")).to_have_count(2)
    for forged in lines.filter(has_text="attempt 1 SUCCESS").all():
        assert forged.inner_text().startswith("[task] [kiok]"), forged.inner_text()
    own = lines.filter(has_text="[kiok] attempt 1 timed out after 2s")
    expect(own).to_have_count(1)
    assert own.inner_text().startswith("[kiok]")
    expect(own.locator("[class*='ansi-']")).to_have_count(0)  # plain, whatever the task left open
    expect(lines.filter(has_text="black on black").locator("span.ansi-fg0.ansi-bg0")).to_have_count(1)
    # The "[task] " marker itself is drawn plain, whatever colour the line before left open.
    behind = lines.filter(has_text="forged behind a marker")
    assert behind.inner_text().startswith("[task] [kiok]"), behind.inner_text()
    expect(behind.locator("[class*='ansi-']")).to_have_count(0)
    # kiok's own lines are drawn apart (a tinted row with a stripe, no escape sequence gives
    # that): a line that only looks like one (a Cyrillic і) is drawn as the task's.
    expect(lines.filter(has_text="with a Cyrillic i")).not_to_have_class(re.compile(r"\bkiok\b"))
    expect(own).to_have_class(re.compile(r"\bkiok\b"))
    expect(log.locator(".ln.kiok")).to_have_count(1)
    page.screenshot(path=str(shots / "log-forged.png"))
    context.close()
    assert console.errors == []


def test_a_20_mb_log_stays_responsive(kiok: Standalone, browser: Any) -> None:
    from playwright.sync_api import expect

    kiok.register(BIG)
    run_id = kiok.trigger("ui_biglog")
    assert kiok.wait_run(run_id, timeout_s=180)["state"] == "SUCCESS"
    size = len(f"line {0:07d} {'x' * 56}\n") * BIG_LINES
    context, page, console = open_page(browser, kiok, "admin", ADMIN_PASSWORD, f"/runs/{run_id}/tasks/flood")
    status = page.get_by_test_id("log-status")
    expect(status).to_contain_text("Complete", timeout=120_000)
    expect(status).to_contain_text(f"{size:,} bytes")
    expect(status).to_contain_text(f"{BIG_LINES:,} lines")

    # Only the lines on screen are in the DOM, and the page answers at once.
    nodes = page.evaluate("document.querySelector('.log').querySelectorAll('*').length")
    assert nodes < 1000, f"{nodes} DOM nodes in the log"
    assert page.evaluate("document.querySelectorAll('*').length") < 2000
    log = page.get_by_test_id("log")
    expect(log).to_contain_text(f"line {BIG_LINES - 1:07d}")  # followed to the end

    started = time.monotonic()
    page.evaluate("document.querySelector('.log').scrollTop = 0")
    expect(log.locator(".ln[data-line='1']")).to_contain_text("line 0000000")
    # These bounds guard against a pathological page (all 300,000 lines in the DOM, a search
    # that blocks it), generous for a loaded CI machine; they measure nothing.
    assert time.monotonic() - started < 6

    # Search across the whole log jumps to a line in the middle.
    started = time.monotonic()
    search = page.get_by_label("Search the log")
    search.fill("line 0150000")
    expect(page.get_by_test_id("log-matches")).to_have_text("1 match")
    search.press("Enter")
    expect(log.locator("mark.current")).to_have_text("line 0150000")
    assert time.monotonic() - started < 15
    nodes = page.evaluate("document.querySelector('.log').querySelectorAll('*').length")
    assert nodes < 1000, f"{nodes} DOM nodes in the log"
    started = time.monotonic()
    assert page.evaluate("1 + 1") == 2
    assert time.monotonic() - started < 3
    context.close()
    assert console.errors == []


# Unicode direction controls (RLO U+202E, the isolates U+2066-2069 ...) make text display in
# another order than it reads ("\u202egnp.exe" shows as "exe.png"), and U+2028 breaks a line
# where there is none. Data that anyone less trusted than the admin writes (a trigger-only
# user's args, a DAG's description and source, task output, the user name of a failed login
# in the audit log) must show them, not obey them.
BIDI = """
dag:
  id: ui_bidi
  description: "safe \u202etpircs lla eteled\u202c done"
  params: {target: staging}
tasks:
  - id: spoof
    script: |
      printf 'deploy to \\342\\200\\256dorp\\342\\200\\254 ok '
      printf '\\342\\201\\247x\\342\\201\\251 \\342\\200\\250end\\n'
      exit 3
"""
_CONTROLS = "[\u2028\u2029\u202a-\u202e\u2066-\u2069]"


def test_direction_controls_in_data_are_shown_not_obeyed(kiok: Standalone, browser: Any) -> None:
    from playwright.sync_api import expect

    kiok.register(BIDI)
    run_id = kiok.trigger("ui_bidi", {"target": "\u202egnitset\u202c"})
    assert kiok.wait_run(run_id, timeout_s=60)["state"] == "FAILED"
    assert (
        httpx.post(kiok.url + "/api/v1/auth/login", json={"user": "\u202enimda", "password": "x"}).status_code
        == 401
    )

    def shown(page: Any) -> None:
        text = page.evaluate("document.body.innerText")
        assert not re.search(_CONTROLS, text), ascii(text)

    context, page, console = open_page(browser, kiok, "admin", ADMIN_PASSWORD, f"/runs/{run_id}")
    expect(page.locator("dd.mono")).to_contain_text('target="<U+202E>gnitset<U+202C>"')
    expect(page.locator("tr[data-task='spoof']")).to_contain_text("exit")
    shown(page)
    page.get_by_role("tab", name="Source").click()
    expect(page.get_by_test_id("source-original")).to_contain_text(
        "safe <U+202E>tpircs lla eteled<U+202C> done"
    )
    expect(page.get_by_test_id("source-spec")).to_contain_text("safe <U+202E>tpircs")
    shown(page)
    page.goto(f"{kiok.url}/runs/{run_id}/tasks/spoof")
    expect(page.get_by_test_id("log-status")).to_contain_text("Complete")
    expect(page.get_by_test_id("log")).to_contain_text(
        "deploy to <U+202E>dorp<U+202C> ok <U+2067>x<U+2069> <U+2028>end"
    )
    shown(page)
    page.goto(f"{kiok.url}/settings/audit?outcome=refused")
    expect(page.get_by_test_id("audit")).to_contain_text("<U+202E>nimda")
    shown(page)
    context.close()
    assert console.errors == []


#: 400 short lines.
ROWS = """
dag: {id: s26_rows}
tasks:
  - {id: t, script: 'for i in $(seq 1 400); do echo "row $i"; done'}
"""


def _searched(kiok: Standalone, browser: Any, dag: str, dag_id: str, query: str) -> tuple[Any, Any, Any]:
    """A run of ``dag`` (its task ``t``), its log opened, ``query`` typed and Enter pressed at
    once: (context, page, console)."""
    from playwright.sync_api import expect

    kiok.register(dag)
    run_id = kiok.trigger(dag_id)
    assert kiok.wait_run(run_id, timeout_s=60)["state"] == "SUCCESS"
    context, page, console = new_page(browser)
    log_in(page, kiok, f"/runs/{run_id}/tasks/t")
    expect(page.get_by_test_id("log-status")).to_contain_text("Complete")
    search = page.get_by_label("Search the log")
    search.fill(query)
    search.press("Enter")
    return context, page, console


def test_enter_right_after_typing_goes_to_the_first_match(kiok: Standalone, browser: Any) -> None:
    """Found by the second UI review: Enter straight after typing searched, but counted the
    matches of the render before (none) and stayed put; a second Enter went."""
    from playwright.sync_api import expect

    context, page, console = _searched(kiok, browser, ROWS, "s26_rows", "row 150")
    expect(page.get_by_test_id("log-matches")).to_have_text("1 of 1 match")
    expect(page.locator("mark.current")).to_have_text("row 150")
    context.close()
    assert console.errors == []


#: 100 lines of 8,000 characters and more, each with its marker far right.
WIDE = """
dag: {id: s26_wide}
tasks:
  - id: t
    type: python
    script: |
      for i in range(100):
          print(str(i) + " " + "y" * 8000 + "MARKER" + str(i) + "z" * 50)
"""


def test_a_match_far_right_in_a_long_line_is_brought_into_view(kiok: Standalone, browser: Any) -> None:
    """Found by the second UI review: the search scrolled to the match's line but not sideways,
    so a match 60,000 px to the right stayed out of view."""
    from playwright.sync_api import expect

    context, page, console = _searched(kiok, browser, WIDE, "s26_wide", "MARKER50")
    mark = page.locator("mark.current")
    expect(mark).to_have_text("MARKER50")
    expect(mark).to_be_in_viewport()
    box = page.get_by_test_id("log").bounding_box()
    found = mark.bounding_box()
    assert box is not None and found is not None
    assert box["x"] <= found["x"] and found["x"] + found["width"] <= box["x"] + box["width"], (box, found)
    context.close()
    assert console.errors == []
