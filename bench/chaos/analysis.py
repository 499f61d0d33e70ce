"""What the chaos soak concludes, as pure functions over what it recorded: the ledger the tasks
wrote themselves, the faults it injected, the runs and logs the masters serve. Nothing here
starts a process, opens a socket or reads the clock (``bench/chaos/cluster.py`` does), so
``tests/unit/test_chaos_analysis.py`` can check every verdict on synthetic ledgers.

Ledger lines (one per event, appended by the task's shell)::

    <run> <task> <attempt> <worker> start <epoch s>
    <run> <task> <attempt> <worker> ok|fail <epoch s>

A task killed mid-attempt (its worker killed, its run taken away) leaves a start without an
end. Times are wall-clock seconds on this one machine, comparable with the faults' times and
the API's ``createdAt``/``endedAt``.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

TERMINAL = frozenset({"SUCCESS", "FAILED", "CANCELLED"})
#: The coordinator's line in a run's log when it hands the run to a worker (after the time).
ASSIGNED = re.compile(r"assigned to worker (\S+)")


class FaultKind(StrEnum):
    WORKER_KILL = "worker_kill"  # kill -9 of a worker, restarted later on the same data dir
    WORKER_STOP = "worker_stop"  # SIGSTOP past the heartbeat timeout, then SIGCONT
    LEADER_KILL = "leader_kill"  # kill -9 of the leading master, restarted later


@dataclass(frozen=True)
class Fault:
    """One injected fault; ``start``–``end`` is when it was in progress: for a worker until it
    was restarted or continued, for the leader until a new leader answered."""

    kind: FaultKind
    target: str
    start: float
    end: float


@dataclass(frozen=True)
class Execution:
    """One execution of a task as the ledger saw it. ``outcome`` is None without an end line."""

    run_id: str
    task_id: str
    attempt: int
    worker: str
    start: float
    end: float | None
    outcome: str | None


@dataclass(frozen=True)
class TaskView:
    state: str
    attempt: int


@dataclass(frozen=True)
class RunView:
    """A run as one master's ``GET /api/v1/runs/{id}`` gave it (times in epoch seconds)."""

    run_id: str
    state: str
    created: float
    ended: float | None
    tasks: Mapping[str, TaskView]


@dataclass(frozen=True)
class StoredLog:
    """A task's (or ``__run__``'s) log as one master served it."""

    master: str
    run_id: str
    task_id: str
    text: str


@dataclass(frozen=True)
class Duplicate:
    run_id: str
    task_id: str
    why: str


@dataclass(frozen=True)
class Stall:
    run_id: str
    start: float
    end: float
    seconds: float  # the gap minus the time a relevant fault was in progress


@dataclass(frozen=True)
class LostLog:
    master: str
    run_id: str
    task_id: str
    missing: tuple[str, ...]


@dataclass(frozen=True)
class DriverFailover:
    """A worker fault → the next start of a run that worker was executing. When a leader
    failover overlaps it, ``from_election_s`` counts from the new leader answering: it gives
    drivers the heartbeat timeout to reconnect from then on (docs/cluster.md)."""

    fault: Fault
    run_id: str
    seconds: float
    overlaps_leader_failover: bool
    from_election_s: float | None = None
    #: When the worker the run was handed to after the fault failed too before the run's next
    #: start: seconds from that second fault, where a second failover began.
    from_next_driver_fault_s: float | None = None

    @property
    def judged_s(self) -> float:
        """The time the bound applies to: from the last of the fault, the new leader
        answering and a fault of the run's next driver."""
        return min(
            s for s in (self.seconds, self.from_election_s, self.from_next_driver_fault_s) if s is not None
        )


# --- the ledger ----------------------------------------------------------------------------


def parse_ledger(text: str) -> tuple[list[Execution], int]:
    """Executions in start order, and how many lines could not be read. An end line closes
    the oldest open start of the same (run, task, attempt, worker)."""
    open_: dict[tuple[str, str, int, str], list[int]] = defaultdict(list)
    rows: list[list[object]] = []
    bad = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 6 or not parts[2].isdigit():
            bad += 1
            continue
        run_id, task_id, attempt_s, worker, what, at_s = parts
        try:
            at = float(at_s)
        except ValueError:
            bad += 1
            continue
        key = (run_id, task_id, int(attempt_s), worker)
        if what == "start":
            open_[key].append(len(rows))
            rows.append([run_id, task_id, int(attempt_s), worker, at, None, None])
        elif what in ("ok", "fail") and open_[key]:
            row = rows[open_[key].pop(0)]
            row[5], row[6] = at, what
        else:
            bad += 1
    execs = [
        Execution(
            str(r[0]),
            str(r[1]),
            int(str(r[2])),
            str(r[3]),
            float(str(r[4])),
            _opt_float(r[5]),
            _opt_str(r[6]),
        )
        for r in rows
    ]
    return sorted(execs, key=lambda e: e.start), bad


def _opt_float(v: object) -> float | None:
    return None if v is None else float(str(v))


def _opt_str(v: object) -> str | None:
    return None if v is None else str(v)


# --- duplicates ----------------------------------------------------------------------------


def disturbed(faults: Iterable[Fault], worker: str, start: float, end: float, grace_s: float) -> bool:
    """Whether ``worker`` was killed or stopped, or recovering from it (``grace_s`` after the
    fault ended: the time it takes a restarted or continued worker to learn it lost its runs),
    at some time in ``[start, end]``."""
    return any(
        f.target == worker
        and f.kind is not FaultKind.LEADER_KILL
        and f.start <= end
        and f.end + grace_s >= start
        for f in faults
    )


def duplicates(executions: Sequence[Execution], faults: Sequence[Fault], grace_s: float) -> list[Duplicate]:
    """Executions that break "no (run, task, attempt) runs twice" and "no task runs again
    while its driver is alive": an attempt number seen twice; or an execution followed by
    another of the same task although it did not fail and neither worker was disturbed (a
    leader failover excuses nothing)."""
    by_task: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    for e in executions:
        by_task[(e.run_id, e.task_id)].append(e)
    found: list[Duplicate] = []
    for (run_id, task_id), execs in sorted(by_task.items()):
        execs.sort(key=lambda e: e.start)
        seen: dict[int, Execution] = {}
        for e in execs:
            if e.attempt in seen:
                first = seen[e.attempt]
                found.append(
                    Duplicate(
                        run_id,
                        task_id,
                        f"attempt {e.attempt} executed twice: on {first.worker} at {first.start:.3f} "
                        f"and on {e.worker} at {e.start:.3f}",
                    )
                )
            seen.setdefault(e.attempt, e)
        for prev, nxt in itertools.pairwise(execs):
            if prev.outcome == "fail" or prev.attempt == nxt.attempt:
                continue
            if disturbed(faults, prev.worker, prev.start, nxt.start, grace_s):
                continue
            if disturbed(faults, nxt.worker, nxt.start, nxt.start, grace_s):
                continue  # a stale driver (just continued or restarted) started it
            what = "after it succeeded" if prev.outcome == "ok" else "while it was running"
            found.append(
                Duplicate(
                    run_id,
                    task_id,
                    f"attempt {nxt.attempt} on {nxt.worker} at {nxt.start:.3f} {what} as attempt "
                    f"{prev.attempt} on {prev.worker} (started {prev.start:.3f}, ended "
                    f"{prev.end if prev.end is None else round(prev.end, 3)}), no fault of either worker",
                )
            )
    return found


# --- stalls --------------------------------------------------------------------------------


def _subtract(span: tuple[float, float], holes: Iterable[tuple[float, float]]) -> float:
    """Length of ``span`` outside the union of ``holes``."""
    lo, hi = span
    covered, cursor = 0.0, lo
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in holes if b > lo and a < hi):
        if b <= cursor:
            continue
        covered += b - max(a, cursor)
        cursor = b
    return (hi - lo) - covered


def stalls(
    runs: Sequence[RunView],
    executions: Sequence[Execution],
    faults: Sequence[Fault],
    drivers: Mapping[str, frozenset[str]],
    threshold_s: float,
    now: float,
) -> list[Stall]:
    """Gaps in a run's life (created → ended, or ``now`` for a run that did not end) with no
    task of it executing, longer than ``threshold_s`` once the time a fault that concerns the
    run was in progress is taken out: any leader failover, and a fault of a worker that
    drove or executed the run (``drivers``: from the run log's assignment lines)."""
    by_run: dict[str, list[Execution]] = defaultdict(list)
    for e in executions:
        by_run[e.run_id].append(e)
    found: list[Stall] = []
    for run in runs:
        end = run.ended if run.ended is not None else now
        workers = set(drivers.get(run.run_id, frozenset())) | {e.worker for e in by_run[run.run_id]}
        holes = [(f.start, f.end) for f in faults if f.kind is FaultKind.LEADER_KILL or f.target in workers]
        busy = sorted((e.start, e.end if e.end is not None else e.start) for e in by_run[run.run_id])
        cursor = run.created
        for a, b in [*busy, (end, end)]:
            if a > cursor:
                gap = (cursor, min(a, end))
                seconds = _subtract(gap, holes)
                if seconds > threshold_s:
                    found.append(Stall(run.run_id, gap[0], gap[1], round(seconds, 3)))
            cursor = max(cursor, b)
            if cursor >= end:
                break
    return found


# --- logs ----------------------------------------------------------------------------------


def expected_task_lines(run_id: str, task_id: str, attempt: int) -> tuple[str, str]:
    """What every execution prints to stdout (the DAGs in ``cluster.py`` print exactly these)."""
    return (f"chaos-out {run_id} {task_id} {attempt} begin", f"chaos-out {run_id} {task_id} {attempt} end")


def lost_logs(runs: Mapping[str, RunView], logs: Sequence[StoredLog]) -> list[LostLog]:
    """Stored logs missing lines of a task that ended SUCCESS: the lines its successful
    attempt printed, and in the run log (``__run__``) its ``started``/``SUCCESS`` events."""
    found: list[LostLog] = []
    for log in logs:
        run = runs.get(log.run_id)
        if run is None:
            continue
        if log.task_id == "__run__":
            want = [
                line
                for tid, t in sorted(run.tasks.items())
                if t.state == "SUCCESS"
                for line in (f" {tid} attempt {t.attempt} started", f" {tid} attempt {t.attempt} SUCCESS")
            ]
            if run.state == "SUCCESS":
                want.append("run finished SUCCESS")
        else:
            task = run.tasks.get(log.task_id)
            if task is None or task.state != "SUCCESS":
                continue
            want = list(expected_task_lines(log.run_id, log.task_id, task.attempt))
        missing = tuple(line for line in want if line not in log.text)
        if missing:
            found.append(LostLog(log.master, log.run_id, log.task_id, missing))
    return found


# --- failover times ------------------------------------------------------------------------


def assignments(text: str) -> list[tuple[float, str]]:
    """(epoch seconds, worker) of each "assigned to worker" line of a run's log."""
    found = []
    for line in text.splitlines():
        at, _, rest = line.partition(" ")
        m = ASSIGNED.match(rest)
        if m is not None:
            with contextlib.suppress(ValueError):
                found.append((datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp(), m.group(1)))
    return found


def driver_failovers(
    executions: Sequence[Execution],
    faults: Sequence[Fault],
    hb_timeout_s: float,
    assigned: Mapping[str, Sequence[tuple[float, str]]] | None = None,
) -> list[DriverFailover]:
    """For each worker fault and each run the worker was executing a task of at that moment:
    seconds until the run's next task start (on another worker after a SIGSTOP, whose stale
    restarts do not count). Overlapping: a leader failover in progress within the heartbeat
    timeout after the worker fault. ``assigned`` (run → ``assignments`` of its log): a fault
    of a worker the run was handed to after the first fault, before the run's next start,
    is where a second failover began (``from_next_driver_fault_s``)."""
    leader = [f for f in faults if f.kind is FaultKind.LEADER_KILL]
    workers = [f for f in faults if f.kind is not FaultKind.LEADER_KILL]
    found: list[DriverFailover] = []
    for f in faults:
        if f.kind is FaultKind.LEADER_KILL:
            continue
        hit = {
            e.run_id
            for e in executions
            if e.worker == f.target and e.start <= f.start and (e.end is None or e.end > f.start)
        }
        overlapping = [lf for lf in leader if lf.start <= f.start + hb_timeout_s and lf.end >= f.start]
        overlaps = bool(overlapping)
        elected = max((lf.end for lf in overlapping), default=None)
        for run_id in sorted(hit):
            later = [
                e.start
                for e in executions
                if e.run_id == run_id
                and e.start > f.start
                and not (f.kind is FaultKind.WORKER_STOP and e.worker == f.target)
            ]
            if later:
                nxt = min(later)
                since = None if elected is None else round(nxt - max(elected, f.start), 3)
                handed = {w for at, w in (assigned or {}).get(run_id, ()) if f.start < at < nxt}
                second = [g.start for g in workers if g.target in handed and f.start < g.start < nxt]
                again = round(nxt - max(second), 3) if second else None
                found.append(DriverFailover(f, run_id, round(nxt - f.start, 3), overlaps, since, again))
    return found


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """Count, median and maximum (None when empty)."""
    if not values:
        return {"n": 0, "p50": None, "max": None}
    return {"n": len(values), "p50": round(statistics.median(values), 3), "max": round(max(values), 3)}


# --- masters' agreement --------------------------------------------------------------------


def disagreements(
    acknowledged: Iterable[str], views: Mapping[str, Mapping[str, RunView | None]]
) -> dict[str, list[str]]:
    """``missing``: "<master> <run>" for each acknowledged run a master does not have;
    ``differ``: runs whose state or task states differ between masters."""
    missing = [
        f"{m} {r}" for r in sorted(acknowledged) for m, runs in sorted(views.items()) if runs.get(r) is None
    ]
    every = sorted({r for runs in views.values() for r in runs})
    differ = []
    for r in every:
        seen = {
            (v.state, tuple(sorted((t, tv.state, tv.attempt) for t, tv in v.tasks.items())))
            for runs in views.values()
            if (v := runs.get(r)) is not None
        }
        if len(seen) > 1:
            differ.append(r)
    return {"missing": missing, "differ": differ}


def process_log_problems(texts: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """Per process log: tracebacks, ``Task exception was never retrieved`` and ERROR lines. A
    killed peer or a lost connection is ordinary in a cluster: one INFO/WARNING line, never a
    traceback (issue 14); ERROR lines are counted for the reader, not judged."""
    return {
        name: {
            "tracebacks": text.count("Traceback (most recent call last)"),
            "neverRetrieved": text.count("exception was never retrieved"),
            "errors": sum(" ERROR " in line for line in text.splitlines()),
        }
        for name, text in texts.items()
    }


# --- verdict -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bounds:
    """The targets (docs/reliability.md): leader failover as documented in docs/performance.md
    (kill → new leader answering), driver failover heartbeat timeout + 1 s, or, when a leader
    failover overlaps it, heartbeat timeout + 1 s from the new leader answering (docs/cluster.md:
    a new leader gives drivers the heartbeat timeout to reconnect)."""

    leader_failover_s: float
    driver_failover_s: float
    driver_failover_overlapping_s: float


@dataclass(frozen=True)
class Findings:
    lost: Sequence[LostLog]
    duplicates: Sequence[Duplicate]
    stalls: Sequence[Stall]
    leader_failover_s: Sequence[float]
    driver_failovers: Sequence[DriverFailover]
    unfinished: Sequence[str]
    missing_on_masters: Sequence[str]
    differ_between_masters: Sequence[str]
    unreadable_ledger_lines: int
    process_log_problems: Mapping[str, Mapping[str, int]]


def missed_targets(f: Findings, bounds: Bounds) -> list[str]:
    """One sentence per missed target; empty when the soak passed."""
    missed = []
    task_logs = [x for x in f.lost if x.task_id != "__run__"]
    if task_logs:
        missed.append(f"{len(task_logs)} lost logs")
    if len(task_logs) < len(f.lost):
        missed.append(f"{len(f.lost) - len(task_logs)} run logs missing lines")
    if f.duplicates:
        missed.append(f"{len(f.duplicates)} duplicate executions on live drivers")
    if f.stalls:
        missed.append(f"{len(f.stalls)} stalls")
    if f.unfinished:
        missed.append(f"{len(f.unfinished)} runs did not end")
    if f.missing_on_masters:
        missed.append(f"{len(f.missing_on_masters)} acknowledged runs missing on a master")
    if f.differ_between_masters:
        missed.append(f"{len(f.differ_between_masters)} runs differ between masters")
    if f.unreadable_ledger_lines:
        missed.append(f"{f.unreadable_ledger_lines} unreadable ledger lines")
    tracebacks = sum(p["tracebacks"] + p["neverRetrieved"] for p in f.process_log_problems.values())
    if tracebacks:
        missed.append(f"{tracebacks} tracebacks in the processes' logs")
    if f.leader_failover_s and max(f.leader_failover_s) > bounds.leader_failover_s:
        missed.append(f"leader failover max {max(f.leader_failover_s):.3f} s > {bounds.leader_failover_s} s")
    for overlapping, bound in (
        (False, bounds.driver_failover_s),
        (True, bounds.driver_failover_overlapping_s),
    ):
        times = [d.judged_s for d in f.driver_failovers if d.overlaps_leader_failover is overlapping]
        if times and max(times) > bound:
            what = "overlapping a leader failover (from the election) " if overlapping else ""
            missed.append(f"driver failover {what}max {max(times):.3f} s > {bound} s")
    return missed
