"""Shipping one task attempt's output to the masters in batches, within bounds.

Bytes are buffered until ``batch_bytes`` are waiting or ``interval_s`` has passed since the
first unshipped byte, then handed to the link. Memory stays bounded by one batch whatever
the task prints; past ``cap_bytes`` the rest of the attempt's output is dropped and a
marker line says so. Secret values are masked (``Masker``) in every batch before it leaves.

kiok's own lines in a task log begin ``[kiok]`` (an attempt's start, its end, why it was
stopped, a truncation). A line of the task's output that begins so is stored with ``[task] ``
in front, so that no task can write a line that reads as kiok's.
"""

from __future__ import annotations

import asyncio
import re

from kiok.ids import RUN_LOG_TASK
from kiok.worker.fenced_logs import LogSink
from kiok.worker.masking import Masker

#: How kiok's own lines begin, and what a task's line that begins so gets in front.
OWN = b"[kiok]"
FROM_TASK = b"[task] "
_OWN_AT_LINE_START = re.compile(rb"^\[kiok\]", re.MULTILINE)


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
    ) -> None:
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
        self._line_open = False
        self._timer: asyncio.TimerHandle | None = None
        self.total_bytes = 0
        #: The start of a line of output that may yet become ``[kiok]`` (``_unforged``).
        self._held = b""

    def write(self, data: bytes) -> None:
        self._take(self._unforged(data), whole=False)

    def _unforged(self, data: bytes) -> bytes:
        """``data`` with ``FROM_TASK`` before each line that begins with ``OWN``; a line start
        that may still become one (``[ki``) is held until the next output (or the end)."""
        if self._held:
            data, self._held = self._held + data, b""
        at_line_start = not self._line_open
        if OWN in data:
            data = _OWN_AT_LINE_START.sub(
                lambda m: m.group(0) if m.start() == 0 and not at_line_start else FROM_TASK + m.group(0), data
            )
        newline = data.rfind(b"\n")
        tail = data[newline + 1 :]
        if tail and len(tail) < len(OWN) and OWN.startswith(tail) and (newline >= 0 or at_line_start):
            self._held, data = tail, data[: newline + 1]
        return data

    def line(self, text: str) -> None:
        """Write one line of kiok's own (already safe) text, e.g. a run-log event: whole, or
        (past the cap) not at all; on a line of its own, after output that did not end its line."""
        self._release_held()
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
