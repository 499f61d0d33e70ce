"""Which tasks of a run a reader at an older version must be sent again.

A task's view (state, wait reason) follows from its own record, the records of its direct
upstreams (a PENDING task is shown QUEUED, or "waiting for upstream: a, b", from them), the
clock (a retry "(due)") and run-wide facts: the run's state, whether it has a driver, and
the coordinator's reason a pending run waits. So the views that may differ from what a
reader saw at version ``since`` are those of the tasks whose record changed after it,
their direct downstreams, and the retrying tasks; unless a run-wide fact changed, in which
case (and for a version the run never had) the reader gets the whole run.

The versions come from ``apply()`` (``kiok.store.run_version``); this module only decides.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import Enum

from kiok.dag.spec import DagSpec
from kiok.ids import TaskId


class Whole(Enum):
    """Why a reader gets the whole run rather than what changed."""

    NO = ""
    #: ``since`` is above the run's version (or not positive): not a version of this run.
    UNKNOWN = "unknown version"
    #: The run's state or driver changed after ``since``: every view may have.
    TOO_OLD = "version too old"
    #: A pending run: its tasks show why the run waits, which is not versioned.
    PENDING = "run pending"


@dataclass(frozen=True)
class RunVersions:
    """What the selection needs to know of a run now."""

    #: The run's current version (header ``version``).
    version: int
    #: The version of its last run-wide change (header ``viewBase``).
    base: int
    pending: bool
    #: Version each task's record was last written at (absent or 0: before versions, or
    #: never written).
    changed_at: Mapping[TaskId, int]
    #: Tasks now RETRYING: their wait reason turns "(due)" with the clock alone.
    retrying: Collection[TaskId]


@dataclass(frozen=True)
class Delta:
    """The answer: ``whole`` is ``Whole.NO`` when ``tasks`` (in DAG order) is all that can
    differ from what the reader holds."""

    whole: Whole
    tasks: tuple[TaskId, ...] = ()

    @property
    def full(self) -> bool:
        return self.whole is not Whole.NO


def downstreams(spec: DagSpec) -> dict[TaskId, tuple[TaskId, ...]]:
    """Each task's direct downstream tasks."""
    out: dict[TaskId, list[TaskId]] = {t.id: [] for t in spec.tasks}
    for t in spec.tasks:
        for up in t.requires:
            if up in out:
                out[up].append(t.id)
    return {tid: tuple(ds) for tid, ds in out.items()}


def dag_order(spec: DagSpec) -> dict[TaskId, int]:
    """Each task's position in the DAG (the order a run view lists its tasks in)."""
    return {t.id: i for i, t in enumerate(spec.tasks)}


def changed_since(
    spec: DagSpec,
    run: RunVersions,
    since: int,
    down: Mapping[TaskId, tuple[TaskId, ...]] | None = None,
    order: Mapping[TaskId, int] | None = None,
) -> Delta:
    """The tasks whose view may have changed after version ``since`` (see the module
    docstring); ``down`` is ``downstreams(spec)`` and ``order`` ``dag_order(spec)`` when
    the caller keeps them (then the answer costs about what changed, not the DAG's size)."""
    if since <= 0 or since > run.version:
        return Delta(Whole.UNKNOWN)
    if since < run.base:
        return Delta(Whole.TOO_OLD)
    if run.pending:
        return Delta(Whole.PENDING)
    down = downstreams(spec) if down is None else down
    picked: set[TaskId] = set(run.retrying)
    for tid, at in run.changed_at.items():
        if at > since:
            picked.add(tid)
            picked.update(down.get(tid, ()))
    if order is None:
        return Delta(Whole.NO, tuple(t.id for t in spec.tasks if t.id in picked))
    return Delta(Whole.NO, tuple(sorted((t for t in picked if t in order), key=order.__getitem__)))
