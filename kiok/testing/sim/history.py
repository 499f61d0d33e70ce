"""A simulated world's committed history, replayed: every entry the replicated-log twin
committed is applied again, in commit order, to a fresh store, so that what must hold at
*every* committed state (not only at the end) is checked, and what must follow commit order
is measured against it:

- at no committed state does a DAG have more RUNNING runs than its ``max_active_runs`` (a run
  a worker refused, or whose driver was lost, stays RUNNING without a driver: it counts);
- no run is first assigned (PENDING -> RUNNING, its first ``AssignRun``) by a command
  committed after its DAG's pause, or maintenance mode's start, and before its end (one
  committed before the pause is fine, whatever the leader was doing meanwhile);
- no task is committed RUNNING while its upstreams' committed records do not make it ready
  (its trigger rule): a start committed before an upstream's end would have a next driver
  run it before that upstream succeeded (again).

It also tells the other invariants when each run ended and was re-run (true time: a master's
first application of the entry), and which runs waited their turn (paused, maintenance,
``max_active_runs``) before they started."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kiok.core.frontier import verdict_from_counts
from kiok.core.readiness import UNSTARTED
from kiok.core.states import TaskRecord, TaskState
from kiok.dag.load import compiled_spec
from kiok.dag.spec import DEFAULT_MAX_ACTIVE_RUNS
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.joblog import SPACES as JOBLOG_SPACES
from kiok.store.joblog import JobLogStore
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader
from kiok.store.replicated import apply_entry

if TYPE_CHECKING:
    from kiok.testing.sim.world import World


@dataclass
class History:
    violations: list[str] = field(default_factory=list)
    #: Per run, the (from, to) spans it was ended: its end's commit to a re-run's (or inf).
    ended: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    #: Per run, when each of its re-runs was committed.
    reruns: dict[str, list[float]] = field(default_factory=dict)
    #: Per run that waited its turn while PENDING (its DAG paused or at ``max_active_runs``,
    #: maintenance on), when it was first assigned: a stall is counted from then.
    started_late: dict[str, float] = field(default_factory=dict)


def replay(world: World) -> History:
    kv = MemoryKV(keys.SPACES)
    joblog = JobLogStore(MemoryKV(JOBLOG_SPACES))
    reader = StateReader(kv)
    times = world.raft.applied_at
    h = History()
    limits: dict[str, int] = {}
    #: Per DAG, the entry index of the pause in force (None: not paused).
    paused: dict[str, int | None] = {}
    maintenance: int | None = None
    over: set[str] = set()  # DAGs over their limit at the last state (reported once per spell)
    waited: set[str] = set()
    requeued: set[str] = set()  # re-run, PENDING again: their next assignment starts them
    for index, cmds in enumerate(world.raft.entries, 1):
        at = times[index - 1] if index <= len(times) else math.inf
        applied = apply_entry(kv, joblog, cmds, index)
        kv.write(applied.writes, sync=False)
        # An entry's commands are applied in order: a pause before an assignment in the same
        # entry was committed first.
        for cmd, (result, error) in zip(cmds, applied.outcomes, strict=True):
            if error is not None:
                continue
            if isinstance(cmd, c.RegisterDag):
                dag = cmd.spec.get("dag", {})
                limits[dag["id"]] = int(dag.get("max_active_runs", DEFAULT_MAX_ACTIVE_RUNS))
            elif isinstance(cmd, c.SetDagPaused):
                paused[cmd.dag_id] = index if cmd.paused else None
            elif isinstance(cmd, c.SetMaintenance):
                maintenance = index if cmd.enabled else None
            elif isinstance(cmd, c.AssignRun) and (result.get("first") or cmd.run_id in requeued):
                # A run starts: its first assignment, or the first after a queued re-run.
                requeued.discard(cmd.run_id)
                h.violations.extend(_held(reader, cmd, index, at, paused, maintenance))
                if cmd.run_id in waited:
                    h.started_late[cmd.run_id] = at
            elif isinstance(cmd, c.ReportTasks) and not result.get("fenced"):
                h.violations.extend(_started_unready(reader, cmd, index, at))
            elif isinstance(cmd, c.RerunRun):
                h.reruns.setdefault(cmd.run_id, []).append(at)
                if cmd.queued:
                    requeued.add(cmd.run_id)
        for run_id in applied.effects.runs_reopened:
            spans = h.ended.get(run_id)
            if spans and spans[-1][1] == math.inf:
                spans[-1] = (spans[-1][0], at)
        for run_id in applied.effects.runs_finished:
            h.ended.setdefault(run_id, []).append((at, math.inf))
        active = reader.active_runs()
        running = Counter(r["dagId"] for r in active if r["state"] == "RUNNING")
        now_over = {d for d, n in running.items() if n > limits.get(d, DEFAULT_MAX_ACTIVE_RUNS)}
        for dag in sorted(now_over - over):
            ids = sorted(r["runId"] for r in active if r["dagId"] == dag and r["state"] == "RUNNING")
            h.violations.append(
                f"DAG {dag}: {running[dag]} runs RUNNING (max_active_runs {limits.get(dag)}) after "
                f"entry {index} at {at:.3f}: {ids}"
            )
        over = now_over
        for r in active:
            dag = r["dagId"]
            if r["state"] == "PENDING" and (
                maintenance is not None
                or paused.get(dag) is not None
                or running[dag] >= limits.get(dag, DEFAULT_MAX_ACTIVE_RUNS)
            ):
                waited.add(r["runId"])
    return h


def _held(
    reader: StateReader,
    cmd: c.AssignRun,
    index: int,
    at: float,
    paused: dict[str, int | None],
    maintenance: int | None,
) -> list[str]:
    header: dict[str, Any] | None = reader.run_header(cmd.run_id)
    assert header is not None
    dag = header["dagId"]
    why = []
    if paused.get(dag) is not None:
        why.append(f"its DAG {dag} was paused (entry {paused[dag]})")
    if maintenance is not None:
        why.append(f"maintenance mode was on (entry {maintenance})")
    return [
        f"run {cmd.run_id} started (assigned to {cmd.worker}, entry {index} at {at:.3f}) while {w}"
        for w in why
    ]


def _started_unready(reader: StateReader, cmd: c.ReportTasks, index: int, at: float) -> list[str]:
    """The tasks ``cmd`` committed RUNNING whose upstreams' committed records do not make them
    ready (``verdict_from_counts``)."""
    started = [tid for tid, rec in cmd.tasks.items() if rec.get("state") == TaskState.RUNNING.value]
    if not started:
        return []
    doc = reader.run_spec(cmd.run_id)
    if doc is None:
        return []
    spec = compiled_spec(doc)
    out = []
    for tid in started:
        task = spec.task(tid)
        ups = []
        for up in task.requires:
            stored = reader.task(cmd.run_id, up)
            ups.append(UNSTARTED if stored is None else TaskRecord.from_dict(stored))
        done = [r for r in ups if r.is_terminal]
        verdict = verdict_from_counts(
            task.trigger_rule,
            len(ups),
            len(done),
            sum(r.state is TaskState.SUCCESS for r in done),
            sum(r.state is TaskState.FAILED for r in done),
        )
        if verdict != "ready":
            states = {up: r.state.value for up, r in zip(task.requires, ups, strict=True)}
            out.append(
                f"run {cmd.run_id}: task {tid} committed RUNNING (entry {index} at {at:.3f}) while its "
                f"upstreams were {states}"
            )
    return out
