"""What a simulated world must show at its end: the guarantees docs/cluster.md gives.

- every acknowledged trigger is a run on every master, and every run ends;
- every master ends with the same state;
- an attempt number is never used for two executions, and no two executions of one task
  overlap (unless the first one's worker was killed, or cut off long enough for the masters
  to give its run to another driver: it learns so only when it is reachable again);
- a task that succeeded runs again only if its worker died, or was cut off for about the
  heartbeat timeout, before the success was committed;
- the stored log of every task that ended SUCCESS holds every line its successful
  execution wrote, and the run log says that attempt succeeded;
- no execution starts after its run ended (a cancelled run's driver walks no further), and
  before it was re-run;
- after the faults stop, no run goes longer than the heartbeat timeout + 2 s with nothing
  of it executing (a run that waited its turn, counted from its start);
- at every committed state, and in commit order (``history``): no DAG has more RUNNING runs
  than its ``max_active_runs``, and no run starts while its DAG is paused or maintenance
  mode is on.

Each violation is one line naming the run, the task and what happened."""

from __future__ import annotations

import hashlib
import itertools
from typing import TYPE_CHECKING, Any

from kiok.core.states import TERMINAL_RUN_STATES
from kiok.ids import RUN_LOG_TASK
from kiok.testing.sim.history import History, replay
from kiok.testing.sim.workers import Execution

if TYPE_CHECKING:
    from kiok.testing.sim.world import World


def check(world: World) -> list[str]:
    runs = all_runs(world)
    by_task: dict[tuple[str, str], list[Execution]] = {}
    for ex in world.ledger.executions:
        by_task.setdefault((ex.run, ex.task), []).append(ex)
    history = replay(world)
    return [
        *_acknowledged_and_ended(world, runs),
        *_same_state(world),
        *_executions(world, by_task, history),
        *_logs(world, runs, by_task),
        *_after_end(world, history),
        *_stalls(world, runs, history),
        *history.violations,
    ]


def all_runs(world: World) -> dict[str, dict[str, Any]]:
    """Every run the first master knows of (acknowledged or not), by id."""
    return {h["runId"]: h for h in world.masters[0].reader.run_headers_newest()}


def _acknowledged_and_ended(world: World, runs: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    for run_id in world.acked:
        for m in world.masters:
            if m.reader.run_header(run_id) is None:
                out.append(f"acknowledged run {run_id} is missing on {m.node_id}")
    for run_id, header in runs.items():
        if header["state"] not in TERMINAL_RUN_STATES:
            out.append(f"run {run_id} never ended (state {header['state']})")
    return out


def _same_state(world: World) -> list[str]:
    digests = {}
    for m in world.masters:
        h = hashlib.sha256()
        for key, value in m.kv.scan("meta", b""):
            h.update(key)
            h.update(value)
        digests[m.node_id] = h.hexdigest()[:12]
    return [f"masters disagree on the state: {digests}"] if len(set(digests.values())) > 1 else []


def _executions(world: World, by_task: dict[tuple[str, str], list[Execution]], history: History) -> list[str]:
    out = []
    for (run_id, task_id), exs in by_task.items():
        where = f"{run_id}/{task_id}"
        attempts = [e.attempt for e in exs]
        dupes = sorted({a for a in attempts if attempts.count(a) > 1})
        if dupes:
            who = [(e.attempt, e.worker, round(e.start, 3)) for e in exs if e.attempt in dupes]
            out.append(f"{where}: attempt number(s) {dupes} executed more than once: {who}")
        ordered = sorted(exs, key=lambda e: e.start)
        for a, b in itertools.pairwise(ordered):
            a_end = a.end if a.end is not None else float("inf")
            cut_off = any(x <= b.start and y >= a.start for x, y in world.long_outages(a.worker))
            if b.start < a_end and a.outcome != "killed" and not cut_off:
                out.append(
                    f"{where}: attempt {b.attempt} on {b.worker} started at {b.start:.3f} while attempt "
                    f"{a.attempt} on {a.worker} was still executing (until {a_end:.3f})"
                )
        for i, ex in enumerate(ordered):
            if ex.outcome != "ok" or i + 1 == len(ordered):
                continue
            later = ordered[i + 1]
            assert ex.end is not None
            if any(ex.end <= t <= later.start for t in history.reruns.get(run_id, [])):
                continue  # a user re-ran it
            if not any(a <= later.start and b >= ex.end for a, b in world.long_outages(ex.worker)):
                out.append(
                    f"{where}: succeeded as attempt {ex.attempt} on {ex.worker} at {ex.end:.3f} (worker "
                    f"alive and connected) and ran again as attempt {later.attempt} on {later.worker}"
                )
    return out


def _logs(
    world: World, runs: dict[str, dict[str, Any]], by_task: dict[tuple[str, str], list[Execution]]
) -> list[str]:
    out = []
    master = world.masters[0]
    for run_id in runs:
        run = master.reader.run(run_id)
        if run is None:
            continue
        for task_id, rec in run["tasks"].items():
            if rec.get("state") != "SUCCESS":
                continue
            done = [e for e in by_task.get((run_id, task_id), []) if e.outcome == "ok"]
            ex = next((e for e in done if e.attempt == rec.get("attempt")), None)
            if ex is None:
                out.append(f"{run_id}/{task_id}: SUCCESS as attempt {rec.get('attempt')}, never executed")
                continue
            run_log, _ = master.joblog.read(run_id, RUN_LOG_TASK, 0, 1 << 30)
            if f" {task_id} attempt {ex.attempt} SUCCESS".encode() not in run_log:
                out.append(f"{run_id}/{task_id}: the run log lacks the SUCCESS of attempt {ex.attempt}")
            stored, _ = master.joblog.read(run_id, task_id, 0, 1 << 30)
            missing = [line for line in ex.lines if line not in stored]
            if missing:
                out.append(
                    f"{run_id}/{task_id}: lost {len(missing)} of {len(ex.lines)} log lines of its success"
                )
    return out


def _after_end(world: World, history: History) -> list[str]:
    """Executions that started after a master applied their run's end (and before the run
    was re-run, if it was)."""
    out = []
    for ex in world.ledger.executions:
        for ended, reopened in history.ended.get(ex.run, []):
            if ended < ex.start < reopened:
                out.append(
                    f"{ex.run}/{ex.task}: attempt {ex.attempt} on {ex.worker} started at {ex.start:.3f}, "
                    f"after its run ended (at {ended:.3f})"
                )
    return out


def _stalls(world: World, runs: dict[str, dict[str, Any]], history: History) -> list[str]:
    """Runs that, after the faults stopped (or, for a run that waited its turn, after it
    started), went longer than the bound with nothing of theirs executing and not finished."""
    bound = world.hb_timeout_s + 2.0
    out = []
    for run_id in runs:
        end = world.ended_at.get(run_id, world.loop.time())
        if run_id in history.reruns:  # the end of its last life
            end = max(end, history.ended[run_id][-1][0])
        spans = sorted(
            (e.start, e.end if e.end is not None else end) for e in world.ledger.executions if e.run == run_id
        )
        t = max(world.faults_end, history.started_late.get(run_id, 0.0))
        for start, stop in spans:
            if stop <= t:
                continue
            if start - t > bound:
                out.append(f"run {run_id} stalled {start - t:.1f}s (from {t:.1f}s) after the faults stopped")
            t = max(t, stop)
        if end - t > bound:
            out.append(f"run {run_id} stalled {end - t:.1f}s before it ended at {end:.1f}s")
    return out
