"""Task output made safe for the reader's terminal: what ``kiok runs logs`` prints there.

A task's output is written by whoever controls the task (a DAG author, a triggering user's
value): printed raw, its escape sequences would drive the operator's terminal (retitle it,
move the cursor to overwrite or hide lines, write the clipboard with OSC 52). As the UI does
(``ui/static/js/ansi.js``), only colour and text attributes (SGR, ``ESC [ ... m``) are kept,
with newlines and tabs; every other escape sequence and control character is dropped.
Output piped elsewhere is left verbatim (a file gets the task's bytes)."""

from __future__ import annotations

import re

#: SGR: parameters of digits, ``;`` and ``:`` only, ending in ``m``.
_SGR = re.compile(r"\x1b\[[0-9;:]*m")
#: Any escape sequence (CSI, OSC to BEL or ST, a two-character one) or control character
#: other than newline and tab, C1 controls (U+0080-U+009F: an 8-bit CSI to some terminals)
#: included.
#: A string sequence (OSC, DCS, SOS, PM, APC) ends at its terminator or, here, at the end of
#: its line: one left open must not swallow the lines after it (kiok's own among them).
_UNSAFE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[\]PX^_][^\x07\x1b\n]*(?:\x07|\x1b\\|(?=\n))|\x1b[ -~]"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)
#: Held at most this long: an escape "sequence" longer than any real one is dropped.
_MAX_HELD = 4096
#: An escape sequence begun at the end of a chunk and not finished there.
_OPEN_TAIL = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|[\]PX^_][^\x07\x1b\n]*|\x1b?)?\Z")


def _keep(m: re.Match[str]) -> str:
    return m.group(0) if _SGR.fullmatch(m.group(0)) else ""


class TerminalFilter:
    """Feed it a log's chunks in order; it returns each chunk safe to print. A sequence split
    between two chunks is held until the next one completes it (or dropped by ``end``)."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, chunk: str) -> str:
        text = self._held + chunk
        tail = _OPEN_TAIL.search(text)
        cut = len(text) if tail is None else tail.start()
        self._held = text[cut:] if len(text) - cut <= _MAX_HELD else ""
        return _UNSAFE.sub(_keep, text[:cut])

    def end(self) -> str:
        """What is held at the end: an unfinished sequence, dropped."""
        self._held = ""
        return ""
