"""What a driver needs from the masters: a place to send task reports, log bytes and
released runs. ``InProcessLink`` (standalone) and the internal-protocol client (cluster)
both implement it, so the driver never knows which one it talks to."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from kiok.protocol.messages import Fence


class MasterLink(Protocol):
    def report_tasks(self, run_id: str, fence: Fence, tasks: dict[str, dict[str, Any]]) -> None:
        """Send task records (TaskRecord.to_dict()) under ``fence``. Fire and forget; the
        link delivers them in call order and retries terminal ones until acknowledged."""
        ...

    def append_log(
        self, run_id: str, fence: Fence, task_id: str, data: bytes, *, offset: int, final: bool
    ) -> None:
        """Append log bytes written by the driver holding ``fence``; ``offset`` is where they
        start in that driver's output for the task (every attempt's output, in order), so the
        masters can store a batch sent twice once. ``final`` marks a task attempt's last batch.
        Every batch is stored before any ``report_tasks`` called after it is applied: the link
        keeps it until acknowledged and sends it again, before later reports, after a
        reconnect. The masters drop (and count) a batch unless this worker drives the run
        under that fence and the run has not ended."""
        ...

    def release_run(self, run_id: str, fence: Fence, reason: str) -> None:
        """Give a run back without finishing it (drain timeout, shutdown)."""
        ...

    def confirm_start(
        self, run_id: str, fence: Fence, task_id: str, record: dict[str, Any]
    ) -> Awaitable[bool]:
        """Called with an attempt's RUNNING record before its process starts: resolves once
        the masters have committed it (True), or to False when they refused the fence (the
        run moved to another driver; this one is told to stop). A driver cut off from the
        masters thus starts nothing that a new driver could start again under the same
        attempt number: ``KIOK_ATTEMPT`` names one execution. Starts in the same event-loop
        turn share one round trip."""
        ...

    def acquire_task_permit(self) -> Any:
        """An awaitable that resolves when the cluster-wide concurrency cap
        (``kiok.scheduler.max.global.concurrency``) lets one more task body start."""
        ...

    def release_task_permit(self) -> None: ...


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
