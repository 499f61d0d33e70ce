"""Task and run logs over HTTP: reading by offset, completeness, the per-task size cap,
unicode, the run log, and 404s. Real ``kiok standalone``, no mocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.testing.process import Standalone

CAP = 100_000
#: On a line of its own: after the kept output, which here ends its line where the cap falls.
MARKER = (
    f"[kiok] log truncated: this attempt's output passed kiok.joblog.max.bytes.per.task "
    f"({CAP} bytes); the rest was dropped\n"
)


@pytest.fixture(scope="module")
def logs_kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    """A standalone with a 100 000-byte log cap per task and log batches shipped every 200 ms."""
    env = {
        "KIOK_WORKER_TASK_SLOTS": "8",
        "KIOK_JOBLOG_MAX_BYTES_PER_TASK": str(CAP),
        "KIOK_JOBLOG_WORKER_BATCH_INTERVAL_MS": "200",
    }
    node = Standalone(tmp_path_factory.mktemp("logs") / "kiok", env)
    node.start()
    yield node
    node.stop()


def read(node: Standalone, run_id: str, task_id: str, offset: int = 0, **params: Any) -> dict[str, Any]:
    r = node.api("GET", f"/api/v1/runs/{run_id}/tasks/{task_id}/log", params={"offset": offset, **params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert set(body) >= {"data", "offset", "nextOffset", "complete"}
    return body


def read_all_in_slices(node: Standalone, run_id: str, task_id: str, limit: int) -> tuple[str, int]:
    """The whole log read ``limit`` bytes at a time; checks each slice continues the last."""
    parts: list[str] = []
    offset = reads = 0
    while True:
        body = read(node, run_id, task_id, offset, limit=limit)
        reads += 1
        assert body["offset"] == offset
        data = body["data"]
        assert body["nextOffset"] - offset == len(data.encode()), body
        if len(data.encode()) > limit:  # a character longer than the limit comes whole, alone
            assert len(data) == 1, (limit, data)
        if body["nextOffset"] == offset:
            assert data == "" and body["complete"], body  # an ended task's log: read to its end
            return "".join(parts), reads
        parts.append(data)
        offset = body["nextOffset"]
        assert reads < 10_000


def test_offset_reads_are_consecutive_slices(logs_kiok: Standalone) -> None:
    dag = logs_kiok.register(
        """
dag: {id: logs_offsets}
tasks:
  - {id: counter, script: 'seq 1 3000'}
"""
    )
    run_id = logs_kiok.trigger(dag)
    assert logs_kiok.wait_run(run_id, 20)["state"] == "SUCCESS"
    expected = "".join(f"{i}\n" for i in range(1, 3001))

    whole = read(logs_kiok, run_id, "counter")
    assert whole["data"] == expected
    assert whole["offset"] == 0 and whole["nextOffset"] == len(expected.encode())
    assert whole["complete"] is True

    sliced, reads = read_all_in_slices(logs_kiok, run_id, "counter", limit=997)
    assert sliced == expected
    assert reads > 10

    # A read from the middle returns exactly the rest.
    mid = read(logs_kiok, run_id, "counter", 5000)
    assert mid["data"] == expected.encode()[5000:].decode()
    assert mid["nextOffset"] == len(expected.encode())
    # Reading at the end: nothing more, same offset back.
    end = read(logs_kiok, run_id, "counter", len(expected.encode()))
    assert end["data"] == "" and end["nextOffset"] == len(expected.encode()) and end["complete"] is True


def test_complete_is_false_while_running_and_true_after(logs_kiok: Standalone, task_tmp_path: Path) -> None:
    go = task_tmp_path / "go"
    dag = logs_kiok.register(
        """
dag: {id: logs_complete, params: {go: /nonexistent}}
tasks:
  - id: gated
    timeout: 20s
    script: |
      echo first-line
      while [ ! -e ${params.go} ]; do sleep 0.05; done
      echo last-line
"""
    )
    run_id = logs_kiok.trigger(dag, {"go": str(go)})
    body = logs_kiok.wait_for(
        lambda: (b := read(logs_kiok, run_id, "gated"))["data"] and b,
        15,
        "the first line of output to arrive",
    )
    assert body["data"] == "first-line\n"
    assert body["complete"] is False
    assert logs_kiok.run(run_id)["tasks"]["gated"]["state"] == "RUNNING"
    run_log = read(logs_kiok, run_id, "__run__")
    assert run_log["complete"] is False and "gated attempt 1 started" in run_log["data"]
    # Reading on from nextOffset while running: nothing new yet, still incomplete.
    more = read(logs_kiok, run_id, "gated", body["nextOffset"])
    assert more["data"] == "" and more["complete"] is False

    go.touch()
    assert logs_kiok.wait_run(run_id, 15)["state"] == "SUCCESS"
    rest = read(logs_kiok, run_id, "gated", body["nextOffset"])
    assert rest["data"] == "last-line\n" and rest["complete"] is True
    assert read(logs_kiok, run_id, "__run__")["complete"] is True


def test_endless_output_is_capped_with_a_marker(logs_kiok: Standalone) -> None:
    dag = logs_kiok.register(
        """
dag: {id: logs_cap}
tasks:
  - {id: chatty, timeout: 3s, script: 'yes'}
"""
    )
    run_id = logs_kiok.trigger(dag)
    run = logs_kiok.wait_run(run_id, 20)
    t = run["tasks"]["chatty"]
    assert t["state"] == "FAILED" and "timed out" in t["error"], t

    log = logs_kiok.log(run_id, "chatty")
    size = len(log.encode())
    assert CAP <= size <= CAP + len(MARKER.encode()), size
    assert "[kiok] log truncated" in log
    assert log.endswith(MARKER)
    kept = log[: -len(MARKER)]
    assert len(kept) == CAP and kept.endswith("\n")  # "y\n" lines: the cap falls at a line's end
    assert set(kept) <= {"y", "\n"}
    assert read(logs_kiok, run_id, "chatty")["complete"] is True


def test_unicode_output_round_trips(logs_kiok: Standalone) -> None:
    text = "héllo wörld — ✓ 日本語 🎉 ŝ"
    dag = logs_kiok.register(
        f"""
dag: {{id: logs_unicode}}
tasks:
  - {{id: sh, script: 'echo "{text}"'}}
  - id: py
    type: python
    script: |
      import sys
      sys.stdout.buffer.write("{text}\\n".encode())
"""
    )
    run_id = logs_kiok.trigger(dag)
    assert logs_kiok.wait_run(run_id, 20)["state"] == "SUCCESS"
    for tid in ("sh", "py"):
        assert logs_kiok.log(run_id, tid) == text + "\n"
        # Slices never split a character: tiny reads still concatenate to the same text; one
        # smaller than a character returns it whole (before: nothing, for ever, at "—").
        for limit in (1, 2, 3, 5):
            sliced, _ = read_all_in_slices(logs_kiok, run_id, tid, limit=limit)
            assert sliced == text + "\n", limit


def test_an_ended_log_that_stops_inside_a_character_is_read_to_its_end(logs_kiok: Standalone) -> None:
    """The day-one re-probe (session 27): a finished task whose output ended with the first
    bytes of a character (killed mid-write, binary output) never read as complete: the cut
    kept its last bytes back for a rest that would never come, and a follower polled for ever."""
    dag = logs_kiok.register(
        "dag: {id: logs_cut_char}\ntasks:\n  - {id: t, script: 'printf \"ab\\360\\237\"'}\n"
    )
    run_id = logs_kiok.trigger(dag)
    assert logs_kiok.wait_run(run_id, 20)["state"] == "SUCCESS"
    for limit in (1, 2, 1 << 20):
        offset, text = 0, ""
        for _ in range(10):
            body = read(logs_kiok, run_id, "t", offset, limit=limit)
            text += body["data"]
            offset = body["nextOffset"]
            if body["complete"]:
                break
        assert body["complete"] and offset == 4, (limit, body)
        assert text == "ab\ufffd", (limit, text)


def test_run_log_records_dispatch_and_results(logs_kiok: Standalone) -> None:
    dag = logs_kiok.register(
        """
dag: {id: logs_runlog}
tasks:
  - {id: good, script: 'echo fine'}
  - {id: bad, requires: [good], script: 'exit 2'}
  - {id: later, requires: [bad], script: 'echo never'}
"""
    )
    run_id = logs_kiok.trigger(dag)
    assert logs_kiok.wait_run(run_id, 20)["state"] == "FAILED"
    run_log = logs_kiok.log(run_id, "__run__")
    lines = run_log.splitlines()
    assert lines and all(ln[:4].isdigit() and "T" in ln.split(" ", 1)[0] for ln in lines), run_log
    assert "assigned to worker" in run_log
    for needle in (
        "good attempt 1 started",
        "good attempt 1 SUCCESS",
        "bad attempt 1 started",
        "bad attempt 1 FAILED (exit code 2",
        "later SKIPPED",
        "run finished FAILED",
    ):
        assert needle in run_log, (needle, run_log)
    order = [
        run_log.index(n)
        for n in (
            "assigned to worker",
            "good attempt 1 started",
            "bad attempt 1 started",
            "run finished FAILED",
        )
    ]
    assert order == sorted(order)
    assert read(logs_kiok, run_id, "__run__")["complete"] is True
    # A task that never ran has an empty, complete log.
    skipped = read(logs_kiok, run_id, "later")
    assert skipped["data"] == "" and skipped["complete"] is True


def test_log_404s(logs_kiok: Standalone) -> None:
    dag = logs_kiok.register("dag: {id: logs_404}\ntasks:\n  - {id: t, script: 'true'}\n")
    run_id = logs_kiok.trigger(dag)
    logs_kiok.wait_run(run_id, 20)

    r = logs_kiok.api("GET", f"/api/v1/runs/{run_id}/tasks/no_such_task/log")
    assert r.status_code == 404, r.text
    err = r.json()["error"]
    assert isinstance(err["code"], str) and err["code"]
    assert "no_such_task" in err["message"]

    r = logs_kiok.api("GET", "/api/v1/runs/no-such-run-1/tasks/t/log")
    assert r.status_code == 404, r.text
    assert "no-such-run-1" in r.json()["error"]["message"]

    r = logs_kiok.api("GET", "/api/v1/runs/no-such-run-1")
    assert r.status_code == 404, r.text
    assert set(r.json()["error"]) >= {"code", "message"}


def test_an_offset_past_what_a_json_number_holds_is_a_400(logs_kiok: Standalone) -> None:
    """``nextOffset`` echoes the offset asked for: one past 2**53 would come back as a
    number no JSON client holds exactly. No log is that long: refused, naming the field."""
    run_id = logs_kiok.trigger(logs_kiok.register("dag: {id: logs_offset}\ntasks: [{id: t, script: 'true'}]"))
    logs_kiok.wait_run(run_id, 20)
    r = logs_kiok.api("GET", f"/api/v1/runs/{run_id}/tasks/t/log", params={"offset": str(10**30)})
    assert r.status_code == 400 and "offset" in r.json()["error"]["message"], r.text
    ok = logs_kiok.api("GET", f"/api/v1/runs/{run_id}/tasks/t/log", params={"offset": str(2**53 - 1)})
    assert ok.status_code == 200 and ok.json()["data"] == "", ok.text
