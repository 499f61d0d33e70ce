"""The admin UI with a big DAG, in a real browser: a 500-task DAG with 50 runs on
``kiok standalone``, opened in Debian's chromium through Playwright.

    .venv/bin/python bench/ui_grid.py [--tasks 500] [--runs 50] [--repeat 3] [--watch-s 20]

Prints one JSON line per measurement:
- ``grid_first_render``: from navigation to the grid drawn (``?limit=<runs>``, all runs on one
  page): the rows on screen, each with a cell per run (the grid draws only those, plus a
  margin), median and max of --repeat page loads; and the rows in the page;
- ``grid_scroll``: from scrolling to the end to the last task's row drawn (in the page);
- ``grid_poll``: while the newest run is unfinished, over --watch-s seconds: requests per
  refresh and their bytes, the main thread's work per refresh (Chromium's ``TaskDuration``
  over the watch, from the DevTools protocol, divided by the refreshes: everything the page
  did, parsing, rendering, style, layout and paint included), and its long tasks (> 50 ms,
  as the browser's PerformanceObserver reports them);
- ``run_view_first_render``: from navigation to the 500-task run's graph (laid out in the
  worker) and job list drawn.

The runs: the oldest runs every task (``true``); the middle ones are cancelled while they
wait (``max_active_runs: 1``), so their cells are all CANCELLED; the newest holds in a
``sleep`` task so it stays unfinished while the poll is watched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from kiok.testing.process import ADMIN_PASSWORD, Standalone

LONGTASKS = """
window.__long = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__long.push(e.duration);
}).observe({ type: "longtask", buffered: true });
"""

#: In the page: scroll the grid to its end and wait for the row LAST to be drawn (ms).
SCROLL_TO_END = """
new Promise((done) => {
  const el = document.querySelector(".grid-scroll");
  const t0 = performance.now();
  el.scrollTop = el.scrollHeight;
  const check = () => document.querySelector("[data-testid=grid] .grow[data-task=LAST]")
    ? done(performance.now() - t0) : requestAnimationFrame(check);
  requestAnimationFrame(check);
})
"""
ROWS_IN_PAGE = "document.querySelectorAll('[data-testid=grid] .grow').length"

#: In the page, right after navigation: wait (each frame) until DRAWN is true, then give where
#: the time went since the navigation started (Navigation and Resource Timing): the page and
#: its scripts up to the grid request, the grid request (and the server's part of it, from
#: its ``Server-Timing``), and the client's work from the reply to the grid drawn.
PAGE_TIMINGS = """
new Promise((done) => {
  const check = () => {
    if (!(DRAWN)) { requestAnimationFrame(check); return; }
    const drawn = performance.now();
    const nav = performance.getEntriesByType("navigation")[0];
    const r = performance.getEntriesByType("resource").filter((e) => e.name.includes("/grid?")).pop();
    const server = r.serverTiming.find((t) => t.name === "grid");
    done({
      drawn_ms: drawn,
      dom_content_loaded_ms: nav.domContentLoadedEventEnd,
      grid_request_start_ms: r.startTime,
      grid_request_ms: r.responseEnd - r.startTime,
      grid_server_ms: server ? server.duration : null,
      reply_to_drawn_ms: drawn - r.responseEnd,
    });
  };
  check();
})
"""


def task_duration(cdp: Any) -> float:
    """Seconds the renderer's main thread has been busy (Chromium's ``TaskDuration``)."""
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return float(next(m["value"] for m in metrics if m["name"] == "TaskDuration"))


def dag(tasks: int, chains: int) -> str:
    lines = [
        "dag: {id: ui_bench, max_active_runs: 1, params: {hold: {type: integer, default: 0}}}",
        "tasks:",
        "  - {id: hold, script: 'sleep ${params.hold}'}",
    ]
    for i in range(tasks - 1):
        requires = f"t{i - chains:03d}" if i >= chains else "hold"
        lines.append(f"  - {{id: t{i:03d}, requires: [{requires}], script: 'true'}}")
    return "\n".join(lines) + "\n"


def chromium() -> str:
    for p in (os.environ.get("CHROMIUM_PATH"), "/usr/lib/chromium/chromium", shutil.which("chromium")):
        if p and os.path.exists(p):
            return p
    raise SystemExit("chromium is not installed (apt-get install -y --no-install-recommends chromium)")


def login(page: Any, kiok: Standalone) -> None:
    page.goto(kiok.url + "/login")
    page.get_by_label("User").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_test_id("user").wait_for()


def wait_true(page: Any, expression: str, timeout_s: float = 120) -> None:
    """Poll an expression every 50 ms (``wait_for_function`` evaluates a string in the page,
    which the UI's Content-Security-Policy forbids)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(expression)
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--watch-s", type=float, default=20)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        kiok = Standalone(Path(tmp) / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
        kiok.start()
        try:
            kiok.register(dag(args.tasks, 25))
            first = kiok.trigger("ui_bench")
            middle = [kiok.trigger("ui_bench") for _ in range(args.runs - 2)]
            newest = kiok.trigger("ui_bench", {"hold": 600})
            kiok.wait_run(first, timeout_s=600)
            for run_id in middle:
                kiok.api("POST", f"/api/v1/runs/{run_id}/cancel")
            kiok.wait_for(lambda: kiok.run(newest)["state"] == "RUNNING", 120, "the newest run to start")
            # The first row (task "hold") drawn with a cell for every run.
            row = "[data-testid=grid] .grow[data-task=hold] a.gc"
            drawn = f"document.querySelectorAll('{row}').length === {args.runs}"
            grid_url = f"{kiok.url}/dags/ui_bench/grid?limit={args.runs}"

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium())
                context = browser.new_context(viewport={"width": 1920, "height": 1080})
                context.add_init_script(LONGTASKS)
                page = context.new_page()
                page.set_default_timeout(120_000)
                login(page, kiok)

                renders = []
                timings: list[dict[str, float]] = []
                for _ in range(args.repeat):
                    page.goto("about:blank")
                    started = time.monotonic()
                    page.goto(grid_url, wait_until="commit")
                    timings.append(page.evaluate(PAGE_TIMINGS.replace("DRAWN", drawn)))
                    renders.append((time.monotonic() - started) * 1000)
                # The first load found the server's column cache cold (a fresh master).
                cold, warm = timings[0], timings[1:] or timings
                print(
                    json.dumps(
                        {
                            "measure": "grid_first_render",
                            "tasks": args.tasks,
                            "runs": args.runs,
                            "median_ms": round(statistics.median(renders)),
                            "max_ms": round(max(renders)),
                            "first_load_ms": round(renders[0]),
                            "rows_in_page": page.evaluate(ROWS_IN_PAGE),
                            "in_page_median_ms": {
                                k: round(statistics.median(t[k] for t in warm), 1)
                                for k in warm[0]
                                if warm[0][k] is not None
                            },
                            "in_page_cold_ms": {k: round(v, 1) for k, v in cold.items() if v is not None},
                            "load_average": os.getloadavg()[0],
                        }
                    )
                )

                last_task = f"t{args.tasks - 2:03d}"
                scroll_ms = page.evaluate(SCROLL_TO_END.replace("LAST", last_task))
                print(json.dumps({"measure": "grid_scroll", "to_end_ms": round(scroll_ms, 1)}))

                # The poll while the newest run is unfinished.
                responses: list[Any] = []
                page.on("response", lambda r: responses.append(r) if "/api/v1/" in r.url else None)
                page.evaluate("window.__long = []")
                cdp = context.new_cdp_session(page)
                cdp.send("Performance.enable")
                busy_before = task_duration(cdp)
                page.wait_for_timeout(args.watch_s * 1000)
                busy_ms = (task_duration(cdp) - busy_before) * 1000
                long_ms = page.evaluate("window.__long")
                requests = [(r.url, len(r.body())) for r in responses]
                grid_requests = [r for r in requests if "/grid" in r[0]]
                partial = [b for u, b in grid_requests if "runs=" in u]
                whole = [b for u, b in grid_requests if "runs=" not in u]
                print(
                    json.dumps(
                        {
                            "measure": "grid_poll",
                            "watch_s": args.watch_s,
                            "refreshes": len(grid_requests),
                            "other_requests": len(requests) - len(grid_requests),
                            "requests_per_refresh": 1,
                            "unfinished_only_bytes": round(statistics.median(partial)) if partial else None,
                            "whole_page_bytes": round(statistics.median(whole)) if whole else None,
                            "main_thread_ms_total": round(busy_ms),
                            "main_thread_ms_per_refresh": round(busy_ms / max(1, len(grid_requests)), 1),
                            "long_tasks": len(long_ms),
                            "long_task_ms_total": round(sum(long_ms)),
                            "long_task_ms_per_refresh": round(sum(long_ms) / max(1, len(grid_requests)), 1),
                        }
                    )
                )

                started = time.monotonic()
                page.goto(f"{kiok.url}/runs/{first}")
                wait_true(
                    page,
                    f"document.querySelectorAll('table.jobs tbody tr').length === {args.tasks} && "
                    f"document.querySelectorAll('[data-testid=graph] a.node').length === {args.tasks}",
                )
                print(
                    json.dumps(
                        {
                            "measure": "run_view_first_render",
                            "tasks": args.tasks,
                            "ms": round((time.monotonic() - started) * 1000),
                            "layout": page.get_attribute("[data-testid=graph]", "data-layout"),
                        }
                    )
                )
                browser.close()
            kiok.api("POST", f"/api/v1/runs/{newest}/cancel")
        finally:
            kiok.stop()


if __name__ == "__main__":
    main()
