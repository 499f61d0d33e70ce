"""A driver's log output on its way to the masters: every byte travels under the fence of the
driver that wrote it, with its offset in that driver's output (``kiok.protocol.link``)."""

from __future__ import annotations

from typing import Protocol

from kiok.protocol.link import MasterLink
from kiok.protocol.messages import Fence


class LogSink(Protocol):
    """Where one task's log batches go (``kiok.worker.logship.TaskLog``)."""

    def append_log(self, run_id: str, task_id: str, data: bytes, *, final: bool) -> None: ...


class FencedLogs:
    """A ``LogSink`` shipping through a ``MasterLink`` under one driver's fence: bytes written
    while a driver held a run always travel with that driver's fence, never a later one, and
    with their offset in the driver's output for each task. One per driver."""

    def __init__(self, link: MasterLink, fence: Fence) -> None:
        self._link = link
        self._fence = fence
        self._offsets: dict[str, int] = {}

    def append_log(self, run_id: str, task_id: str, data: bytes, *, final: bool) -> None:
        offset = self._offsets.get(task_id, 0)
        self._offsets[task_id] = offset + len(data)
        self._link.append_log(run_id, self._fence, task_id, data, offset=offset, final=final)
