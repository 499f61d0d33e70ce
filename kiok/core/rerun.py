"""Re-running a finished run: which tasks go back to PENDING (pure: no clock, no I/O).

A re-run happens in the same run: tasks outside the selection keep their records (so a
succeeded upstream's result stands and is not run again), tasks inside it are put back to
PENDING by the transition table's RERUN event, keeping their attempt numbers, and the
driver that takes the run next walks the graph from there as it would after a failover.

The selection is closed downstream: a task that runs again may change what its downstreams
would see, so they all run again too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kiok.core.readiness import UNSTARTED, graph_plan
from kiok.core.states import TaskRecord, TaskState
from kiok.core.transitions import TaskEvent, TaskEventKind, apply_task_event
from kiok.dag.spec import DagSpec
from kiok.errors import Conflict, InvalidInput
from kiok.ids import TaskId

__all__ = ["RerunRequest", "rerun_selection", "reset_records"]


@dataclass(frozen=True)
class RerunRequest:
    """What to re-run. ``from_task``: that task and everything downstream of it (whatever
    their state). Without it, ``only_failed``: every task that did not succeed (FAILED,
    CANCELLED, SKIPPED because of those) and everything downstream of them; else every task."""

    from_task: str | None = None
    only_failed: bool = True


def _downstream_closure(spec: DagSpec, seeds: set[TaskId]) -> set[TaskId]:
    plan = graph_plan(spec)
    out = set(seeds)
    todo = list(seeds)
    while todo:
        for d in plan.downstream[todo.pop()]:
            if d not in out:
                out.add(d)
                todo.append(d)
    return out


def rerun_selection(
    spec: DagSpec, tasks: Mapping[TaskId, TaskRecord], req: RerunRequest
) -> tuple[TaskId, ...]:
    """The tasks to put back to PENDING, in topological order. Raises ``InvalidInput`` for a
    ``from_task`` the DAG does not have and ``Conflict`` when nothing is left to re-run
    (every task succeeded and only failed ones were asked for)."""
    if req.from_task is not None:
        if req.from_task not in spec.task_ids:
            raise InvalidInput(f"from: the run's DAG has no task {req.from_task!r}")
        seeds = {TaskId(req.from_task)}
    elif req.only_failed:
        seeds = {tid for tid in spec.task_ids if tasks.get(tid, UNSTARTED).state is not TaskState.SUCCESS}
        if not seeds:
            raise Conflict(
                "nothing to re-run: every task succeeded (re-run from a task, or all of them: "
                "'from' or 'onlyFailed: false' in the API, --from TASK or --all in the CLI)"
            )
    else:
        seeds = set(spec.task_ids)
    chosen = _downstream_closure(spec, seeds)
    return tuple(t.id for t in graph_plan(spec).order if t.id in chosen)


def reset_records(
    tasks: Mapping[TaskId, TaskRecord], selection: tuple[TaskId, ...], at_ms: int
) -> dict[TaskId, TaskRecord]:
    """The new records of ``selection`` (each task's RERUN through the table; a task with no
    record yet stays unstarted). Raises ``IllegalTransition`` if one has not finished."""
    out: dict[TaskId, TaskRecord] = {}
    for tid in selection:
        rec = tasks.get(tid)
        if rec is None:
            continue
        out[tid] = apply_task_event(rec, TaskEvent(TaskEventKind.RERUN, at_ms))[0]
    return out
