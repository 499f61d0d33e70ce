"""The per-log cap in ``TaskLog``: an attempt's output is cut where the cap falls; the run log
(kiok's own lines) keeps whole lines only and says it is the run log that was truncated."""

from __future__ import annotations

import asyncio
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from kiok.cli.terminal import TerminalFilter
from kiok.ids import RUN_LOG_TASK
from kiok.security.masking import Masker
from kiok.worker.logship import FROM_TASK, TaskLog
from tests.unit.test_masking import RecordingLink


def _log(link: RecordingLink, task_id: str, cap: int, *secrets: str) -> TaskLog:
    masker = Masker(list(secrets)) if secrets else None
    return TaskLog(link, "r", task_id, batch_bytes=1 << 20, interval_s=60, cap_bytes=cap, masker=masker)


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


async def test_what_a_viewer_does_not_show_does_not_hide_a_forged_line() -> None:
    """Before: only a line whose first bytes were ``[kiok]`` was marked, so an escape sequence,
    a carriage return or a zero-width character in front of it (or within it), which the UI
    and ``kiok runs logs`` leave out, made the line read as kiok's own again."""
    link = RecordingLink()
    log = _log(link, "t1", 1 << 20)
    forged = [
        b"\x1b[m[kiok] attempt 1 SUCCESS (exit code 0)",
        b"\r[kiok] attempt 1 SUCCESS via CR",
        "\u200b[kiok] zero-width space".encode(),
        "\ufeff\u202e[kiok] byte order mark, right-to-left override".encode(),
        b"[ki\x1b[1mok] an escape within",
        b"\x1b]0;title\x07\x1b[32m[kiok] a title, then green",
        b"\x1b]x\x1b[m[kiok] a string sequence the UI ends at the next escape",
        # Characters a browser draws as nothing (a reported attack: these passed).
        "\ufe0f[kiok] a variation selector".encode(),
        "[\ufe0fkiok] a variation selector within".encode(),
        "\U000e0001[kiok] a tag character".encode(),
        "[\u034fkiok] a combining grapheme joiner".encode(),
        "\u180e[kiok] a Mongolian vowel separator".encode(),
        "\u3164[kiok] a Hangul filler".encode(),
        # What a terminal draws as nothing (found by the attack probe: these passed there).
        "\u0301[kiok] a combining acute".encode(),
        "\u1161[kiok] a Hangul vowel jamo".encode(),
        "\ufff9[kiok] an interlinear annotation anchor".encode(),
        "\U00013430[kiok] an Egyptian hieroglyph format control".encode(),
        "\u20dd[kiok] an enclosing circle".encode(),
        "\u200b\u0301[kiok] a zero-width space and a combining mark".encode(),
        "\u0951[kiok] a Devanagari stress sign".encode(),
        # A string sequence each viewer ends differently (found by review): the UI leaves out
        # only ESC P and shows the rest; the terminal ends an OSC only at BEL, ST or the line's end.
        b"\x1bP[kiok] a DCS the UI shows the text of",
        b"\x1b_[kiok] an APC the UI shows the text of",
        b"\x1b][kiok] an OSC the terminal shows the text of\x1b",
    ]
    kept = [b"\x1b[32mgreen\x1b[0m [kiok] later in the line", b"\x1b[1m[kio", b"[kiosk] not kiok"]
    for line in forged + kept:
        log.write(line + b"\n")
    # Split anywhere, within an escape sequence too.
    log.write(b"\x1b")
    log.write(b"[3")
    log.write(b"1m[k")
    log.write(b"iok] split within an escape\n")
    log.close()
    lines = b"".join(link.batches).split(b"\n")[:-1]
    expected = (
        [b"[task] " + line for line in forged] + kept + [b"[task] \x1b[31m[kiok] split within an escape"]
    )
    assert lines == expected


async def test_a_line_start_that_stays_undecided_is_marked_past_a_bound() -> None:
    link = RecordingLink()
    log = _log(link, "t1", 1 << 20)
    log.write(b"\x1b[m" * 2000)  # 6,000 bytes that show nothing, and no end of line yet
    log.write(b"[kiok] after all that\n")
    log.close()
    assert b"".join(link.batches) == b"[task] " + b"\x1b[m" * 2000 + b"[kiok] after all that\n"


#: ``ui/static/js/ansi.js``'s ``ESCAPES``: what the UI leaves out of a line.
_UI_HIDES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]"
)
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\U000e0000-\U000e0fff"
    "\u0301\u1161\ufff9\u20dd\U00013430]"
)
_PIECES = ["[", "k", "i", "o", "]", "[kiok]", "a", " ", "\t", "\r", "\x1b", "\x1b[", "\x1b[m", "\x1b[31m",
           "\x1b]0;t\x07", "\x1b]x", "\x1b(B", "\u200b", "\ufeff", "\x85", "\n", "\ufe0f", "\U000e0001",
           "\u034f", "é", "к", "\x1bP", "\x1b_", "\x1bX", "\x1b^", "\x1b\\", "\x07",
           "\u0301", "\u1161", "\ufff9", "\u20dd", "\U00013430"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=40), st.lists(st.integers(0, 200), max_size=6))
def test_no_output_shows_as_kiok_s_own_line_in_either_viewer(pieces: list[str], cuts: list[int]) -> None:
    data = "".join(pieces).encode()
    link = RecordingLink()

    async def ship() -> None:
        log = _log(link, "t1", 1 << 20)
        last = 0
        for cut in sorted(c for c in cuts if c < len(data)):
            log.write(data[last:cut])
            last = cut
        log.write(data[last:])
        log.close()

    asyncio.run(ship())
    shipped = b"".join(link.batches)
    assert shipped.replace(FROM_TASK, b"") == data  # nothing but the marks added
    for raw in shipped.split(b"\n"):
        text = raw.decode(errors="replace")
        terminal = TerminalFilter()
        in_terminal = re.sub(r"\x1b\[[0-9;:]*m", "", terminal.feed(text) + terminal.end())
        for shown in (_UI_HIDES.sub("", text), in_terminal):
            if _INVISIBLE.sub("", shown).startswith("[kiok]"):
                assert raw.startswith(FROM_TASK), (raw, shown)


async def test_a_secret_the_cap_cuts_is_masked() -> None:
    """The security probe of session 28: output whose cap fell inside a secret kept the
    secret's start, followed by the marker, never to be masked (the next batch that would
    have completed it was dropped); how much leaked, whoever chose the output's length chose."""
    link = RecordingLink()
    log = _log(link, "t", 1000, "S3cr3t-VALUE-xyz")
    log.write(b"0" * 990)
    log.write(b"S3cr3t-VALUE-xyz\n")
    log.close()
    stored = b"".join(link.batches)
    assert b"S3cr3t" not in stored, stored[-80:]
    assert stored.startswith(b"0" * 990 + b"***\n[kiok] log truncated"), stored[-80:]


async def test_output_cut_by_a_line_of_kiok_masks_the_start_of_a_secret_it_ends_with() -> None:
    """The security re-probe of session 28: an http answer past the 1 MiB logged ended inside
    the token it echoed, then kiok's line "the rest of the answer is not logged" followed:
    the token's start was stored unmasked."""
    link = RecordingLink()
    log = _log(link, "h", 1 << 20, "tok_9f8e7d6c5b4a3210")
    log.write(b'{"auth": "Bearer tok_9f8e7d6c')
    log.line("[kiok] the rest of the answer is not logged (over 1 MiB)")
    log.close()
    stored = b"".join(link.batches)
    assert stored == b'{"auth": "Bearer ***\n[kiok] the rest of the answer is not logged (over 1 MiB)\n', (
        stored
    )
