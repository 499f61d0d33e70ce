"""The run half of ``apply()``: creating runs, assigning them under fences, taking task
reports, cancelling. Transition rules come from ``kiok.core``; this module only records
their results, so the store and the driver can never disagree about what is legal."""

from __future__ import annotations

from typing import Any

from kiok.core.readiness import advance, run_outcome
from kiok.core.states import RunState, TaskRecord, TaskState
from kiok.core.transitions import ReportVerdict, TaskEvent, TaskEventKind, apply_task_event, report_verdict
from kiok.dag.load import spec_from_document
from kiok.errors import Conflict, NotFound
from kiok.ids import TaskId
from kiok.store import commands as c
from kiok.store import keys as k
from kiok.store.effects import Effects
from kiok.store.txn import Txn

_TERMINAL_RUN = {s.value for s in (RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED)}


def create_run(
    txn: Txn,
    spec: dict[str, Any],
    trigger: str,
    args: dict[str, Any],
    scheduled_ms: int | None,
    at_ms: int,
    fx: Effects,
) -> str:
    seq = (txn.get(k.META, k.RUN_SEQ_COUNTER) or 0) + 1
    txn.put(k.META, k.RUN_SEQ_COUNTER, seq)
    dag_id = spec["dag"]["id"]
    run_id = f"{dag_id}-{at_ms}-{seq}"
    run = {
        "runId": run_id,
        "dagId": dag_id,
        "seq": seq,
        "state": RunState.PENDING.value,
        "trigger": trigger,
        "args": args,
        "scheduledMs": scheduled_ms,
        "createdMs": at_ms,
        "startedMs": None,
        "endedMs": None,
        "worker": None,
        "term": 0,
        "epoch": 0,
        "cancel": False,
        "staleReports": 0,
        "tasks": {t["id"]: TaskRecord().to_dict() for t in spec["tasks"]},
    }
    txn.put(k.META, k.run(run_id), run)
    txn.put(k.META, k.run_spec(run_id), spec)
    txn.put(k.META, k.run_by_seq(seq), run_id)
    txn.put(k.META, k.run_by_dag(dag_id, seq), run_id)
    txn.put(k.META, k.active_run(run_id), {"dagId": dag_id, "seq": seq})
    fx.runs_created.append(run_id)
    fx.runs_changed.add(run_id)
    return run_id


def _load(txn: Txn, run_id: str) -> dict[str, Any]:
    run = txn.get(k.META, k.run(run_id))
    if run is None:
        raise NotFound(f"run {run_id!r} not found")
    assert isinstance(run, dict)
    return run


def _records(run: dict[str, Any]) -> dict[TaskId, TaskRecord]:
    return {TaskId(t): TaskRecord.from_dict(r) for t, r in run["tasks"].items()}


def _store(txn: Txn, run: dict[str, Any], tasks: dict[TaskId, TaskRecord], at_ms: int, fx: Effects) -> None:
    run["tasks"] = {t: r.to_dict() for t, r in tasks.items()}
    outcome = run_outcome(tasks, list(tasks), bool(run["cancel"]))
    if outcome is not None and run["state"] not in _TERMINAL_RUN:
        run["state"] = outcome.value
        run["endedMs"] = at_ms
        txn.delete(k.META, k.active_run(run["runId"]))
        fx.runs_finished.append(run["runId"])
    txn.put(k.META, k.run(run["runId"]), run)
    fx.runs_changed.add(run["runId"])


def _lose_running(tasks: dict[TaskId, TaskRecord], at_ms: int) -> None:
    for tid, rec in tasks.items():
        if rec.state is TaskState.RUNNING:
            tasks[tid], _ = apply_task_event(rec, TaskEvent(TaskEventKind.LOST, at_ms))


def apply_assign(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.AssignRun)
    run = _load(txn, cmd.run_id)
    if run["state"] in _TERMINAL_RUN:
        raise Conflict(f"run {cmd.run_id} is already {run['state']}")
    tasks = _records(run)
    _lose_running(tasks, cmd.at_ms)
    run.update(worker=cmd.worker, term=cmd.term, epoch=run["epoch"] + 1, state=RunState.RUNNING.value)
    if run["startedMs"] is None:
        run["startedMs"] = cmd.at_ms
    _store(txn, run, tasks, cmd.at_ms, fx)
    return {"term": run["term"], "epoch": run["epoch"]}


def apply_release(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.ReleaseRun)
    run = _load(txn, cmd.run_id)
    if run["epoch"] != cmd.epoch or run["state"] in _TERMINAL_RUN:
        return {"released": False}
    tasks = _records(run)
    _lose_running(tasks, cmd.at_ms)
    run["worker"] = None
    _store(txn, run, tasks, cmd.at_ms, fx)
    return {"released": True}


def apply_report(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.ReportTasks)
    run = _load(txn, cmd.run_id)
    if (cmd.term, cmd.epoch) != (run["term"], run["epoch"]) or run["worker"] is None:
        run["staleReports"] += 1
        txn.put(k.META, k.run(cmd.run_id), run)
        fx.stale_reports += 1
        return {"accepted": 0, "stale": len(cmd.tasks), "fenced": True}
    tasks = _records(run)
    accepted = stale = 0
    for tid, raw in cmd.tasks.items():
        if tid not in tasks:
            stale += 1
            continue
        reported = TaskRecord.from_dict(raw)
        verdict = report_verdict(tasks[TaskId(tid)], reported)
        if verdict is ReportVerdict.ACCEPT:
            tasks[TaskId(tid)] = reported
            accepted += 1
        elif verdict is ReportVerdict.STALE:
            stale += 1
    if stale:
        run["staleReports"] += stale
        fx.stale_reports += stale
    _store(txn, run, tasks, cmd.at_ms, fx)
    return {"accepted": accepted, "stale": stale, "fenced": False}


def apply_cancel(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.CancelRun)
    run = _load(txn, cmd.run_id)
    if run["state"] in _TERMINAL_RUN:
        if run["state"] == RunState.CANCELLED.value:
            return {"runId": cmd.run_id, "state": run["state"]}
        raise Conflict(f"run {cmd.run_id} already ended {run['state']}")
    run["cancel"] = True
    spec = spec_from_document(txn.get(k.META, k.run_spec(cmd.run_id)))
    tasks = dict(advance(spec, _records(run), cmd.at_ms, cancelled=True).tasks)
    if run["worker"] is None:
        # No driver to stop anything: whatever was running is gone with the lost driver.
        for tid, rec in tasks.items():
            if rec.state is TaskState.RUNNING:
                tasks[tid], _ = apply_task_event(rec, TaskEvent(TaskEventKind.CANCEL, cmd.at_ms))
    else:
        fx.cancels.append((cmd.run_id, run["worker"]))
    _store(txn, run, tasks, cmd.at_ms, fx)
    return {"runId": cmd.run_id, "state": run["state"]}
