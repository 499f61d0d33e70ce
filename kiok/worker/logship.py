"""Shipping one task attempt's output to the masters in batches, within bounds.

Bytes are buffered until ``batch_bytes`` are waiting or ``interval_s`` has passed since the
first unshipped byte, then handed to the link. Memory stays bounded by one batch whatever
the task prints; past ``cap_bytes`` the rest of the attempt's output is dropped and a
marker line says so. Secret values are masked (``Masker``) in every batch before it leaves.

kiok's own lines in a task log begin ``[kiok]`` (why an attempt was stopped, a param
refused, a truncation). A line of the task's output that begins so as a viewer shows it is
stored with ``[task] `` in front, so that no task can write a line that reads as kiok's:
what the UI and ``kiok runs logs`` do not show (escape sequences, control characters,
Unicode's zero-width and direction marks, combining and enclosing marks, format characters,
Hangul vowel and final jamo) does not count, before ``[kiok]`` or within it.
Look-alike characters (a Cyrillic ``к``, full-width brackets) are not looked for.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata

from kiok.ids import RUN_LOG_TASK
from kiok.security.masking import Masker
from kiok.worker.fenced_logs import LogSink

#: How kiok's own lines begin, and what a task's line that begins so gets in front.
OWN = b"[kiok]"
FROM_TASK = b"[task] "
#: A line start that may show as ``[kiok]``: every one but those that plainly do not (a
#: visible character other than ``[``, or ``[`` and one other than ``k``, after colours at
#: most: printable ASCII or an empty line), which are most lines and are passed over without
#: Python. A line starting with any other character is looked at: most scripts have marks
#: that show as nothing.
_CANDIDATE = re.compile(rb"^(?!(?:\x1b\[[0-9;]*m)*\[?[ -Z\\-jl-~\n])", re.MULTILINE)
#: A byte without which no line can show as ``[kiok]`` nor be undecided: most output has none.
_MAY_SHOW_OWN = re.compile(rb"[\[\x00-\x09\x0b-\x1f\x7f-\xff]")
#: What each viewer leaves out of a line, and such a sequence begun at the end of the output
#: so far: the UI (``ui/static/js/ansi.js``: an OSC to BEL, ST or the next escape; any
#: other escape and the character after it) and ``kiok runs logs`` on a terminal
#: (``kiok.cli.terminal``: an OSC, DCS, SOS, PM or APC to BEL, ST or the end of its line;
#: any other escape and the character after it); a CSI and control characters but newline
#: in both. Each leaves out at least what its viewer does (a line marked more than needed
#: is harmless; one marked less would read as kiok's there).
_HIDDEN_BY_VIEWER = (
    (
        re.compile(
            rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|\x1b[ -~]"
            rb"|[\x00-\x09\x0b-\x1f\x7f]"
        ),
        re.compile(rb"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b\n]*\x1b?)?\Z"),
    ),
    (
        re.compile(
            rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[\]PX^_][^\x07\x1b\n]*(?:\x07|\x1b\\|(?=\n))|\x1b[ -~]"
            rb"|[\x00-\x09\x0b-\x1f\x7f]"
        ),
        re.compile(rb"\x1b(?:\[[0-?]*[ -/]*|[\]PX^_][^\x07\x1b\n]*\x1b?|[ -/]*)?\Z"),
    ),
)
#: Characters that show as nothing (or a blank): Unicode's Default_Ignorable_Code_Point
#: (zero-width characters, direction marks, variation selectors, tags, fillers…), C1
#: controls, the Hangul fillers and the vowel and final jamo a terminal draws over the
#: character before (glibc's ``wcwidth`` 0), as (first, last) code points; and every
#: character of ``_ZERO_WIDTH`` categories (found by the attack probe: a combining accent, an
#: enclosing circle, an interlinear annotation mark or a jamo before ``[kiok]`` left a
#: terminal showing the line as kiok's).
_ZERO_WIDTH = frozenset({"Mn", "Me", "Cf"})
_IGNORABLE = (
    (0x80, 0x9F), (0xAD, 0xAD), (0x34F, 0x34F), (0x61C, 0x61C), (0x115F, 0x11FF), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x2028, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xD7B0, 0xD7FF), (0xE0000, 0xE0FFF),
)  # fmt: skip
#: A line start still undecided past this many bytes is marked as the task's anyway.
_MAX_HELD = 4096


class TaskLog:
    def __init__(
        self,
        link: LogSink,
        run_id: str,
        task_id: str,
        *,
        batch_bytes: int,
        interval_s: float,
        cap_bytes: int,
        masker: Masker | None = None,
        line_open: bool = False,
    ) -> None:
        """``line_open``: the log so far (an earlier attempt's output) ends mid-line, so kiok's
        first line here starts with a newline."""
        self._link = link
        self._run_id = run_id
        self._task_id = task_id
        self._batch_bytes = batch_bytes
        self._interval_s = interval_s
        self._cap = cap_bytes
        self._masker = masker if masker else None
        self._buf = bytearray()
        self._kept = 0
        self._truncated = False
        #: Whether the last byte kept did not end a line.
        self._line_open = line_open
        self._timer: asyncio.TimerHandle | None = None
        self.total_bytes = 0
        #: The start of a line of output that may yet become ``[kiok]`` (``_unforged``).
        self._held = b""

    def write(self, data: bytes) -> None:
        self._take(self._unforged(data), whole=False)

    def _unforged(self, data: bytes) -> bytes:
        """``data`` with ``FROM_TASK`` before each line that shows as beginning with ``OWN``; a
        line start that may still come to (``[ki``, an escape sequence) is held until the next
        output (or the end)."""
        if self._held:
            data, self._held = self._held + data, b""
        if _MAY_SHOW_OWN.search(data) is None:
            return data
        marks: list[int] = []
        for m in _CANDIDATE.finditer(data):
            start = m.start()
            if start == 0 and self._line_open:
                continue
            shown = _shows_own(data, start)
            if shown is None:  # the output so far ends within this line's start
                if len(data) - start <= _MAX_HELD:
                    self._held, data = data[start:], data[:start]
                    break
                shown = True
            if shown:
                marks.append(start)
        if not marks:
            return data
        pieces, last = [], 0
        for at in marks:
            pieces += [data[last:at], FROM_TASK]
            last = at
        pieces.append(data[last:])
        return b"".join(pieces)

    @property
    def line_open(self) -> bool:
        """Whether what this log wrote so far ends mid-line."""
        return self._line_open

    def line(self, text: str) -> None:
        """Write one line of kiok's own (already safe) text, e.g. a run-log event: whole, or
        (past the cap) not at all; on a line of its own, after output that did not end its line."""
        self._release_held()
        if self._masker is not None and self._buf:
            # Output before a line of kiok's own is cut there (an http answer past what is
            # logged, an attempt stopped): a start of a secret it ends with is masked, as at
            # the size cap, or the line would follow it unmasked (security re-probe, session 28).
            self._buf[:] = self._masker.mask_cut(bytes(self._buf))
        lead = "\n" if self._line_open and not self._truncated else ""
        self._take((lead + text + ("" if text.endswith("\n") else "\n")).encode(), whole=True)

    def _marker(self, *, whole: bool) -> bytes:
        """The line that ends a capped log, on a line of its own: after a line cut where the
        cap fell, or output that did not end its line, it starts with a newline."""
        lead = "\n" if self._line_open else ""  # what was kept, the cut included, ended mid-line
        if self._task_id == RUN_LOG_TASK:  # kiok's own lines, not an attempt's output
            return (
                f"{lead}[kiok] log truncated: the run log passed kiok.joblog.max.bytes.per.task "
                f"({self._cap} bytes); this worker's later run events were dropped\n"
            ).encode()
        return (
            f"{lead}[kiok] log truncated: this attempt's output passed kiok.joblog.max.bytes.per.task "
            f"({self._cap} bytes); the rest was dropped\n"
        ).encode()

    def _take(self, data: bytes, *, whole: bool) -> None:
        """Keep ``data`` within the cap: task output is cut where the cap falls, a line of
        kiok's own (``whole``) is kept whole or dropped; then one marker line says so."""
        self.total_bytes += len(data)
        if self._truncated:
            return
        room = self._cap - self._kept
        if len(data) > room:
            data = b"" if whole else data[:room]
            self._truncated = True
        self._kept += len(data)
        self._buf += data
        if data:
            self._line_open = not data.endswith(b"\n")
        if self._truncated:
            if self._masker is not None:  # the cap may fall inside a secret: its start is masked
                self._buf[:] = self._masker.mask_cut(bytes(self._buf))
            self._buf += self._marker(whole=whole)
        if len(self._buf) >= self._batch_bytes:
            self.flush()
        elif self._buf and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval_s, self.flush)

    def flush(self, *, final: bool = False) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buf and not final:
            return
        data = bytes(self._buf)
        self._buf.clear()
        if self._masker is not None and data:
            data, keep = self._masker.mask_batch(data, final=final)
            if keep:  # the start of a secret may end this batch: finish it in the next one
                self._buf += keep
                if self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(self._interval_s, self.flush)
        if data:  # an attempt that printed nothing leaves nothing to store or to order
            self._link.append_log(self._run_id, self._task_id, data, final=final)

    def close(self) -> None:
        """Ship what is left as the attempt's final batch."""
        self._release_held()
        self.flush(final=True)

    def _release_held(self) -> None:
        """The output held as a possible ``[kiok]`` start is the task's as it is: kept, in order."""
        if self._held:
            held, self._held = self._held, b""
            self._take(held, whole=False)


def _unseen(char: int) -> bool:
    """Whether code point ``char`` shows as nothing at the start of a line."""
    return any(first <= char <= last for first, last in _IGNORABLE) or (
        unicodedata.category(chr(char)) in _ZERO_WIDTH
    )


def _shows_own(data: bytes, at: int) -> bool | None:
    """Whether the line starting at ``at`` shows as beginning with ``OWN`` in either viewer;
    None when ``data`` ends before that is known for both."""
    shown = [_shows_own_in(data, at, hidden, begun) for hidden, begun in _HIDDEN_BY_VIEWER]
    return True if True in shown else None if None in shown else False


def _shows_own_in(data: bytes, at: int, hidden: re.Pattern[bytes], begun: re.Pattern[bytes]) -> bool | None:
    """``_shows_own`` for one viewer, which leaves out ``hidden`` (and ignorable characters)."""
    seen = 0
    while seen < len(OWN):
        if at == len(data) or begun.match(data, at):
            return None
        unseen = hidden.match(data, at)
        if unseen is not None:
            at = unseen.end()
            continue
        if data[at] >= 0x80:  # a UTF-8 sequence: unseen if it is an ignorable character
            size = 2 if data[at] < 0xE0 else 3 if data[at] < 0xF0 else 4
            if at + size > len(data):
                return None
            try:
                char = ord(data[at : at + size].decode())
            except (UnicodeDecodeError, TypeError):
                return False  # shown as U+FFFD
            if not _unseen(char):
                return False
            at += size
            continue
        if data[at] != OWN[seen]:
            return False
        seen, at = seen + 1, at + 1
    return True
