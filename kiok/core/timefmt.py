"""ISO-8601 UTC text for epoch milliseconds: the one time format of the API, the run log
and task environments.

The text of a second is remembered: a run stamps thousands of records within a few
seconds, and ``strftime`` costs more than everything else in a run view's row.
"""

from __future__ import annotations

import time

__all__ = ["iso_millis", "iso_utc"]

_last: tuple[int, str] = (-1, "")


def _second(s: int) -> str:
    global _last
    last = _last  # one read: another thread may replace it
    if last[0] != s:
        t = time.gmtime(s)  # not strftime: its %Y does not pad a year below 1000 to four digits
        text = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        last = _last = (s, text)
    return last[1]


def iso_utc(ms: int) -> str:
    """``ms`` to the second, e.g. ``2024-05-01T12:00:00Z``."""
    return _second(ms // 1000) + "Z"


def iso_millis(ms: int) -> str:
    """``ms`` to the millisecond, e.g. ``2024-05-01T12:00:00.250Z``."""
    s, frac = divmod(ms, 1000)
    return f"{_second(s)}.{frac:03d}Z"
