"""The link between masters and workers: what each side may ask of the other.

Both directions of the contract live here, next to the message classes they carry:

- ``MasterLink`` is a run's driver's view of the masters (task reports, log bytes, a released
  run, attempt starts, global concurrency permits). ``kiok.worker.master_client`` implements
  it over the internal protocol (TCP, one ``Report``/``Log``/``Release`` frame per call);
  ``kiok.roots.standalone.InProcessLink`` implements it in one process by handing the *same
  message objects* to the master's ``Intake``; the simulator uses the TCP client over its
  simulated network.
- ``WorkerHandle`` is the coordinator's view of one worker (its ``WorkerInfo``, an
  ``Assignment`` offered and its ``OfferReply``, a cancel). The internal server implements it
  per connection, standalone with a direct call.

Whichever implementation is used, the guarantees are the same, and the master decides what
to commit in one place (``kiok.master.intake``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from kiok.protocol.messages import Assignment, Claim, Fence, OfferReply


class MasterLink(Protocol):
    #: Whether an attempt's start is committed by the report that carries it, with whatever
    #: else that report holds (in one process: ``confirm_start`` waits for nothing). Then an
    #: upstream's end still lingering in the driver goes in the same report as its
    #: downstream's start, atomically; over the network the start is committed on its own
    #: (``confirm_start``), so the upstream's end must be sent before it.
    starts_in_reports: bool
    #: Whether the driver can end a run while it cannot reach the masters (over the network).
    #: Then the report that ends a run carries every task's record: masters that restored a
    #: backup meanwhile hold records from before it, and must learn all that ran, not only
    #: what they had not acknowledged (they would keep a downstream's end while its
    #: upstreams, restored RUNNING, ran again). In one process nothing is ever cut off.
    may_be_cut_off: bool

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


@dataclass(frozen=True)
class WorkerInfo:
    """What the coordinator (and ``GET /api/v1/cluster``) knows of one worker."""

    id: str
    address: str
    labels: tuple[str, ...]
    slots: int
    free: int
    connected: bool
    draining: bool
    last_heartbeat_ms: int | None
    #: How its tasks are isolated from kiok (``kiok.worker.isolation``): "user+pidns",
    #: "user", "none", or "unknown" for a worker that did not say.
    task_isolation: str = "unknown"


class WorkerHandle(Protocol):
    """The coordinator's view of one worker, local or remote."""

    def info(self) -> WorkerInfo: ...

    async def offer(self, assignment: Assignment, labels: Iterable[str]) -> OfferReply:
        """Offer a run; the worker ACKs (it now drives the run) or NAKs with a reason."""
        ...

    def cancel(self, run_id: str, reason: str) -> None:
        """The run was cancelled: its driver stops its tasks; ``reason`` (who cancelled) is
        what each stopped task's log says."""
        ...

    def held(self) -> tuple[Claim, ...]:
        """The runs the worker drives, with their fences, as it last said (a single master's
        restore hands them to the new coordinator's ``reattach``)."""
        ...

    def abandon(self, claims: tuple[Claim, ...]) -> None:
        """The worker must stop driving these runs, each only under the fence named."""
        ...

    def resync(self) -> None:
        """The masters' state was replaced (a single master's restore): the worker's drivers
        send their whole state again, as after a reconnect (a remote worker reconnects)."""
        ...
