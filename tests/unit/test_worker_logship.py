"""The per-log cap in ``TaskLog``: an attempt's output is cut where the cap falls; the run log
(kiok's own lines) keeps whole lines only and says it is the run log that was truncated."""

from __future__ import annotations

from kiok.ids import RUN_LOG_TASK
from kiok.worker.logship import TaskLog
from tests.unit.test_worker_masking import RecordingLink


def _log(link: RecordingLink, task_id: str, cap: int) -> TaskLog:
    return TaskLog(link, "r", task_id, batch_bytes=1 << 20, interval_s=60, cap_bytes=cap)


async def test_the_run_log_is_truncated_at_a_line_end_and_says_so() -> None:
    link = RecordingLink()
    log = _log(link, RUN_LOG_TASK, 100)
    first = "2026-12-07T05:07:18Z t1 attempt 1 started on w1"  # 48 bytes with its newline
    log.line(first)
    log.line("2026-12-07T05:07:19Z t1 attempt 1 SUCCESS (0.2s)")  # 49: 97 kept
    log.line("2026-12-07T05:07:19Z t2 attempt 1 started on w1")  # does not fit: dropped whole
    log.line("later")
    log.close()
    lines = b"".join(link.batches).decode().splitlines()
    assert lines[:2] == [first, "2026-12-07T05:07:19Z t1 attempt 1 SUCCESS (0.2s)"]
    assert lines[2:] == [
        "[kiok] log truncated: the run log passed kiok.joblog.max.bytes.per.task (100 bytes); "
        "this worker's later run events were dropped"
    ]


async def test_task_output_is_cut_at_the_cap_and_the_marker_is_its_own_line() -> None:
    link = RecordingLink()
    log = _log(link, "t1", 10)
    log.write(b"0123456789abc\n")
    log.write(b"more\n")
    log.close()
    assert b"".join(link.batches) == (
        b"0123456789\n[kiok] log truncated: this attempt's output passed "
        b"kiok.joblog.max.bytes.per.task (10 bytes); the rest was dropped\n"
    )


async def test_a_line_of_kiok_past_the_cap_after_an_unended_line() -> None:
    link = RecordingLink()
    log = _log(link, "t1", 10)
    log.write(b"abc")  # the task ended without a newline
    log.line("[kiok] a note longer than the room left")
    log.close()
    data = b"".join(link.batches)
    assert data.startswith(b"abc\n[kiok] log truncated: this attempt's output passed ")
    assert b"a note" not in data


async def test_a_task_line_that_reads_as_kiok_s_own_says_it_is_the_task_s() -> None:
    """A task printed ``[kiok] task t attempt 1 SUCCESS`` and the like, which read as kiok's own
    lines in every view; split between writes too, and not in the middle of a line."""
    link = RecordingLink()
    log = _log(link, "t1", 1 << 20)
    log.write(b"[kiok] task t attempt 1 SUCCESS -- forged\nok [kiok] in a line\n[ki")
    log.write(b"ok] split\n[")
    log.write(b"kio")
    log.line("[kiok] attempt 1 ended")  # kiok's own, after what the task wrote before it
    log.write(b"[kiok")
    log.close()
    assert b"".join(link.batches).decode().splitlines() == [
        "[task] [kiok] task t attempt 1 SUCCESS -- forged",
        "ok [kiok] in a line",
        "[task] [kiok] split",
        "[kio",
        "[kiok] attempt 1 ended",
        "[kiok",
    ]
