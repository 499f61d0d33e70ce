"""Task output made safe for the reader's terminal: what ``kiok runs logs`` prints there.

A task's output is written by whoever controls the task (a DAG author, a triggering user's
value): printed raw, its escape sequences would drive the operator's terminal (retitle it,
move the cursor to overwrite or hide lines, write the clipboard with OSC 52). As the UI does
(``ui/static/js/ansi.js``), only the colours and text attributes the UI shows are kept (SGR,
``ESC [ ... m``: colours, bold, dim, italic, underline; not concealed, blinking or reversed
text), with newlines and tabs; every other escape sequence and control character is dropped.
A colour the task left open does not reach kiok's own lines (``[kiok] ...``, which no task
line shows as: ``kiok.worker.logship``): they start plain, as in the UI (the task's colour
is not given back after one, as the UI does), their ``[kiok]`` drawn in reverse video, which
no task's output can have here (reverse video is not kept): a line that only looks like one
(a character a terminal draws as nothing before it, a long line wrapping at ``[kiok]``) is
told apart as the UI's tinted row tells it; and the output ends plain, so the operator's
prompt after it is not the task's to colour or hide.
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
#: Also the start of kiok's own lines, which a colour left open must not reach.
_UNSAFE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[\]PX^_][^\x07\x1b\n]*(?:\x07|\x1b\\|(?=\n))|\x1b[ -~]"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]|(?m:^\[(?:kiok|task)\])"
)
#: Held at most this long: an escape "sequence" longer than any real one is dropped.
_MAX_HELD = 4096
#: An escape sequence begun at the end of a chunk and not finished there.
#: (A string sequence may end with the ESC of its ST, ``ESC \\``, the ``\\`` yet to come: its
#: text printed before it came would depend on where the log's pages were cut.)
_OPEN_TAIL = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|[\]PX^_][^\x07\x1b\n]*\x1b?)?\Z")


#: Plain text again.
RESET = "\x1b[0m"
#: How the ``[kiok]`` of kiok's own lines is drawn: reverse video, then not.
_OWN_DRAWN = "\x1b[7m[kiok]\x1b[27m"
#: How kiok's own lines begin.
_OWN = "[kiok]"
#: What kiok writes before a task's line that would read as its own: drawn plain too, so that
#: a colour the task left open cannot hide it.
_MARK = "[task]"
#: SGR parameters the UI shows: reset, bold, dim, italic, underline and their ends, the
#: palette's colours and the defaults (38 and 48, the 256-colour and 24-bit forms, apart).
_SHOWN_CODES = frozenset([0, 1, 2, 3, 4, 22, 23, 24, 39, 49, *range(30, 38), *range(40, 48)])
_SHOWN_CODES |= frozenset([*range(90, 98), *range(100, 108)])


def shown_sgr(params: str) -> list[str]:
    """The parameters of ``ESC [ params m`` the UI would show, in order (empty: reset)."""
    if not params:
        return ["0"]
    codes = params.split(";")
    out: list[str] = []
    i = 0
    while i < len(codes):
        code = codes[i]
        if code.isdigit() and int(code) in (38, 48):
            form = codes[i + 1 : i + 2]
            width = 2 if form == ["5"] else 4 if form == ["2"] else 0
            args = codes[i + 1 : i + 1 + width]
            if width and len(args) == width and all(a.isdigit() and int(a) < 256 for a in args[1:]):
                out += [str(int(code)), *args]
            i += 1 + width if width else len(codes)  # a form not known: the rest is not read
            continue
        if code == "" or (code.isdigit() and int(code) in _SHOWN_CODES):
            out.append(str(int(code or "0")))
        i += 1
    return out


class TerminalFilter:
    """Feed it a log's chunks in order; it returns each chunk safe to print. A sequence split
    between two chunks is held until the next one completes it (or dropped by ``end``), as is
    a line's start that may still become kiok's (``[ki``)."""

    def __init__(self) -> None:
        self._held = ""
        #: Whether the next character starts a line (in the chunk being filtered: its first).
        self._at_line_start = True
        #: Whether a colour or attribute may be open.
        self._styled = False

    def feed(self, chunk: str) -> str:
        text = self._held + chunk
        tail = _OPEN_TAIL.search(text)
        cut = len(text) if tail is None else tail.start()
        self._held = text[cut:] if len(text) - cut <= _MAX_HELD else ""
        text = text[:cut]
        if not self._held:
            newline = text.rfind("\n")
            rest = text[newline + 1 :]
            at_line_start = newline >= 0 or self._at_line_start
            may_become = rest and len(rest) < len(_OWN) and (_OWN.startswith(rest) or _MARK.startswith(rest))
            if may_become and at_line_start:
                self._held, text = rest, text[: newline + 1]
        out = _UNSAFE.sub(self._keep, text)
        if text:
            self._at_line_start = text.endswith("\n")
        return out

    def _keep(self, m: re.Match[str]) -> str:
        """An SGR sequence with the parameters the UI shows; the start of kiok's own line,
        after a reset if a colour may be open; nothing for anything else."""
        found = m.group(0)
        if found in (_OWN, _MARK):
            if m.start() == 0 and not self._at_line_start:
                return found  # within a line the previous chunk began
            drawn = _OWN_DRAWN if found == _OWN else found
            if not self._styled:
                return drawn
            self._styled = False
            return RESET + drawn
        if not _SGR.fullmatch(found) or ":" in found:
            return ""
        params = shown_sgr(found[2:-1])
        if not params:
            return ""
        self._styled = params[-1] != "0" or len(params) > 1
        return f"\x1b[{';'.join(params)}m"

    def end(self) -> str:
        """What is left at the end: an unfinished sequence is dropped, a line's start kept;
        plain text again."""
        out = "" if self._held.startswith("\x1b") else self._held
        self._held = ""
        if self._styled:
            self._styled = False
            out += RESET
        return out
