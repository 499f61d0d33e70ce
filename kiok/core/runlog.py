"""The one form of a line in a run's orchestration log (``__run__``), written by the driver
(attempt starts and ends) and by the masters (assignments, cancels, notifications)."""

from __future__ import annotations

import re

from kiok.core.timefmt import iso_utc

#: Control characters (C0 but tab, DEL, C1), newline included: an event may quote what a task
#: printed (a python task's last line in its error) or what a worker said, and the run log is
#: kiok's own record: an escape sequence there coloured every later line as the log box's
#: background in the UI and the operator's terminal (found by the attack probe), a newline
#: would start a line of the task's choosing.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def run_log_line(at_ms: int, text: str) -> str:
    """``<time> <text>`` with any control character in ``text`` shown as ``\\xNN``."""
    return f"{iso_utc(at_ms)} {_CONTROL.sub(_shown, text)}"


def _shown(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}"
