"""The run half of ``apply()``: creating runs, assigning them under fences, taking task
reports, cancelling. Transition rules come from ``kiok.core``; this module only records
their results, so the store and the driver can never disagree about what is legal.

A run is stored as a header (``run/<id>``: state, fence, counters), the list of its task
ids, and one key per task that has left PENDING (``task/<id>/<task>``; a task without one
is unstarted), so creating a run writes no per-task keys and a report touches only the
tasks it names: neither grows with the size of the DAG. The header counts open
(non-terminal) and failed tasks, which is all it takes to know when and how the run ends.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kiok.core.holds import hold_reason
from kiok.core.interruption import REVOKED_ERROR, cancel_reason
from kiok.core.readiness import UNSTARTED, advance, final_run_state
from kiok.core.rerun import RerunRequest, rerun_selection, reset_records
from kiok.core.runlog import run_log_line
from kiok.core.states import TERMINAL_RUN_STATES, RunState, TaskRecord, TaskState
from kiok.core.transitions import ReportVerdict, TaskEvent, TaskEventKind, apply_task_event, report_verdict
from kiok.dag.load import compiled_spec
from kiok.errors import Conflict, InvalidInput, NotFound
from kiok.ids import RUN_LOG_TASK, TaskId
from kiok.store import commands as c
from kiok.store import keys as k
from kiok.store.apply_notify import on_run_end
from kiok.store.effects import Effects
from kiok.store.run_index import count_task, initial_counts, put_header
from kiok.store.run_version import stamp_noted, stored_record
from kiok.store.txn import Txn


def create_run(
    txn: Txn,
    spec: dict[str, Any],
    trigger: str,
    args: dict[str, Any],
    scheduled_ms: int | None,
    at_ms: int,
    fx: Effects,
    *,
    dag_version: int | None = None,
    interval: tuple[int, int] | None = None,
    trace: str = "",
    by: str = "",
) -> str:
    """Create a PENDING run of ``spec``; ``dag_version`` is the DAG version it runs,
    ``interval`` the schedule interval ``[start, end)`` it stands for (backfills), ``by`` who
    asked for it (a trigger or a backfill; "" for the scheduler's)."""
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
        "open": len(spec["tasks"]),
        "failed": 0,
        "taskCounts": initial_counts(len(spec["tasks"])),
        "dagVersion": dag_version,
    }
    run_timeout = compiled_spec(spec).run_timeout_ms
    if run_timeout is not None:
        run["runTimeoutMs"] = run_timeout
    if interval is not None:
        run["interval"] = {"startMs": interval[0], "endMs": interval[1]}
    if trace:  # the trigger request's W3C traceparent: the run's spans join its trace
        run["trace"] = trace
    if by:
        run["triggeredBy"] = by
    stamp_noted(run, fx)
    put_header(txn, run)
    txn.put(k.META, k.run_task_ids(run_id), [t["id"] for t in spec["tasks"]])
    txn.put(k.META, k.run_spec(run_id), spec)
    txn.put(k.META, k.run_by_seq(seq), run_id)
    txn.put(k.META, k.run_by_dag(dag_id, seq), run_id)
    txn.put(k.META, k.active_run(run_id), {"dagId": dag_id, "seq": seq})
    fx.runs_created.append(run_id)
    fx.runs_changed.add(run_id)
    return run_id


def driver_holds(run: dict[str, Any] | None, worker: str, term: int, epoch: int) -> bool:
    """Whether ``worker`` drives ``run`` (a run header) now, under fence (term, epoch): the
    run exists, has not finished, and was last assigned to that worker under that fence.
    Only such a driver's log batches are taken (``AppendLogs``, the masters' log gate)."""
    return (
        run is not None
        and run["worker"] == worker
        and run["term"] == term
        and run["epoch"] == epoch
        and run["state"] not in TERMINAL_RUN_STATES
    )


def takes_master_lines(run: dict[str, Any] | None) -> bool:
    """Whether the masters' own lines (the ``__run__`` log: assignments, cancels, a
    notification's attempts) may still be added to ``run`` (a run header): it exists and its
    logs were not purged. A line for a run deleted meanwhile would be a log that nothing
    deletes again; one for a purged run, text in a log the run says is gone."""
    return run is not None and not run.get("logsPurgedMs")


def _load(txn: Txn, run_id: str) -> dict[str, Any]:
    run = txn.get(k.META, k.run(run_id))
    if run is None:
        raise NotFound(f"run {run_id!r} not found")
    assert isinstance(run, dict)
    return run


def _all_tasks(txn: Txn, run_id: str) -> dict[TaskId, TaskRecord]:
    prefix = k.tasks_prefix(run_id)
    return {
        TaskId(key.decode()[len(prefix) :]): TaskRecord.from_dict(v) for key, v in txn.scan(k.META, prefix)
    }


def _put_task(txn: Txn, run: dict[str, Any], tid: str, old: TaskRecord, new: TaskRecord, fx: Effects) -> None:
    """Store one task's new record, keeping the header's counters in step."""
    run["open"] += int(old.is_terminal) - int(new.is_terminal)
    run["failed"] += int(new.state is TaskState.FAILED) - int(old.state is TaskState.FAILED)
    count_task(run, old.state.value, new.state.value)
    stored = stored_record(run, new)
    txn.put(k.META, k.task(run["runId"], tid), stored)
    fx.task_written(run["runId"], tid, stored["v"], new)


def _close(txn: Txn, run: dict[str, Any], at_ms: int, fx: Effects, *, told: bool = False) -> None:
    """Write the header; end the run when no task is open any more. ``told``: a cancel or a
    run timeout a user or the scheduler asked for ends it (a line says so even when no driver
    holds the run; the coordinator's own cancel of a run whose driver is gone says it with
    the driver's name)."""
    if run["open"] == 0 and run["state"] not in TERMINAL_RUN_STATES:
        never_driven = run["state"] == RunState.PENDING.value
        outcome = final_run_state(
            cancelled=bool(run["cancel"]),
            any_failed=bool(run["failed"]),
            any_cancelled=(run.get("taskCounts") or {}).get(TaskState.CANCELLED.value, 0) > 0,
            timed_out=bool(run.get("failReason")),
        )
        run["state"] = outcome.value
        run["endedMs"] = at_ms
        # A run ends on the report of its last open task, which may reach the masters before
        # its driver's last run-log lines: those would be refused after the end, so the
        # masters say how it ended, every time. Found by the failover probes: a cancelled run
        # ended on a report sent before its driver heard of the cancel (session 28), and ~1 %
        # of short runs lost "run finished SUCCESS", the last task's report sent on its
        # linger timer before the driver's walk wrote it (session 29). A cancelled run whose
        # driver is gone gets its line where that is found, saying so (the coordinator, a
        # revocation); one that never had a driver (PENDING) here.
        if not run["cancel"]:
            _master_line(run, at_ms, f"run finished {outcome.value.upper()}", fx)
        elif run["worker"] is not None or never_driven or told:
            why = cancel_reason(run.get("cancelBy"), run.get("failReason"))
            _master_line(run, at_ms, f"run stopped, {why}", fx)
        txn.delete(k.META, k.active_run(run["runId"]))
        on_run_end(txn, run, at_ms)
        fx.runs_finished.append(run["runId"])
    stamp_noted(run, fx)
    put_header(txn, run)
    fx.runs_changed.add(run["runId"])


def _lose_running(
    txn: Txn, run: dict[str, Any], at_ms: int, fx: Effects, error: str | None = None
) -> set[TaskId]:
    """Mark the run's RUNNING tasks lost (queued again, same attempt; ``error``: why, None
    for "driver lost"); their ids."""
    lost = set()
    for tid, rec in _all_tasks(txn, run["runId"]).items():
        if rec.state is TaskState.RUNNING:
            event = TaskEvent(TaskEventKind.LOST, at_ms, error=error)
            _put_task(txn, run, tid, rec, apply_task_event(rec, event)[0], fx)
            lost.add(tid)
    return lost


def _pass_unreported_attempts(
    txn: Txn, run: dict[str, Any], lost: set[TaskId], at_ms: int, fx: Effects
) -> None:
    """A run taken from a driver that did not give it back: every task that driver could
    have been starting (ready, queued or due for a retry in our records) is queued past that
    attempt, so the next driver never reuses its number (``KIOK_ATTEMPT`` names one
    execution). Tasks it was known to run (``lost``) already go on to a new number. The
    passed number never ran (a driver runs an attempt once its start is committed, and the
    lost driver's start is fenced off), so it costs the task no retry: its retry budget
    (``attempt - attempt_base``) moves up with it."""
    spec = compiled_spec(txn.get(k.META, k.run_spec(run["runId"])))
    before = _all_tasks(txn, run["runId"])
    after = advance(spec, before, at_ms, cancelled=bool(run["cancel"])).tasks
    for tid, rec in after.items():
        if rec.state is not TaskState.QUEUED or tid in lost:
            continue
        passed = TaskRecord(
            state=TaskState.QUEUED,
            attempt=rec.attempt + 1,
            started_at_ms=rec.started_at_ms,
            ended_at_ms=rec.ended_at_ms,
            exit_code=rec.exit_code,
            error=f"attempt {rec.attempt + 1} may have started on the previous driver",
            worker=rec.worker,
            attempt_base=rec.attempt_base + 1,
        )
        _put_task(txn, run, tid, before.get(tid, UNSTARTED), passed, fx)


def _held(txn: Txn, dag_id: str) -> str | None:
    """Why no PENDING run of ``dag_id`` may start now (``kiok.core.holds``)."""
    dag = txn.get(k.META, k.dag(dag_id))
    return hold_reason(
        dag_id,
        maintenance=bool((txn.get(k.META, k.MAINTENANCE) or {}).get("enabled")),
        paused=dag is not None and bool(dag.get("paused")),
    )


def apply_assign(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.AssignRun)
    floor = cmd.fence_floor
    if not c.is_floor(floor):
        raise InvalidInput(f"assign_run: fence_floor is a number in [0, {c.MAX_FENCE_FLOOR}]")
    run = _load(txn, cmd.run_id)
    if run["state"] in TERMINAL_RUN_STATES:
        raise Conflict(f"run {cmd.run_id} is already {run['state']}")
    if cmd.respect_holds and run["state"] == RunState.PENDING.value and (why := _held(txn, run["dagId"])):
        # The leader saw neither, but a pause (or maintenance) committed ahead of this command
        # (the same Raft entry, even) holds the run: what the user was told then holds.
        raise Conflict(f"run {cmd.run_id} waits: {why}")
    if run["worker"] is not None:  # taken from a driver that did not give it back
        lost = _lose_running(txn, run, cmd.at_ms, fx, cmd.lost_error or None)
        _pass_unreported_attempts(txn, run, lost, cmd.at_ms, fx)
    first = run["epoch"] == 0  # never assigned: every task is still unstarted
    # Never handed out before: above every fence of this store (the counter survives a
    # restore into a live cluster) and above the floor, the leader's clock (fences handed
    # out by the cluster a backup came from, which fresh masters restoring it never saw).
    epoch = max(run["epoch"], txn.get(k.KMS, k.FENCE_EPOCH) or 0, floor) + 1
    txn.put(k.KMS, k.FENCE_EPOCH, epoch)
    if run["state"] == RunState.PENDING.value and run.get("lastRerun"):
        run["lastRerun"] = dict(run["lastRerun"], startedMs=cmd.at_ms)  # its run_timeout counts from here
    run.update(worker=cmd.worker, term=cmd.term, epoch=epoch, state=RunState.RUNNING.value)
    if run["startedMs"] is None:
        run["startedMs"] = cmd.at_ms
    fx.fences_changed.append(cmd.run_id)
    _close(txn, run, cmd.at_ms, fx)
    return {"term": run["term"], "epoch": run["epoch"], "first": first}


def take_runs_from_revoked(txn: Txn, worker_id: str, at_ms: int, fx: Effects) -> None:
    """(``RevokeWorker``) A revoked worker drives nothing more: its credential is refused from
    now on, so it can neither report nor give a run back. Each run it drove is taken from it
    now, as a new driver's assignment would take it (its running tasks lost with
    ``REVOKED_ERROR``, the attempts it may have been starting passed), and has no driver until
    another takes it. Before, the run showed the revoked worker driving and its task RUNNING
    for as long as no other worker could take it, and a worker re-admitted under the same id
    was then told its tasks were "lost" (found by the day-one walk: a run needing a label
    only the revoked worker had). A cancel (or run timeout) the driver was carrying out is
    finished here: no driver is left to, and the run may wait for one for good."""
    active = [key.decode()[len(k.ACTIVE_PREFIX) :] for key, _ in txn.scan(k.META, k.ACTIVE_PREFIX)]
    for run_id in active:
        run = txn.get(k.META, k.run(run_id))
        if run is None or run["worker"] != worker_id or run["state"] in TERMINAL_RUN_STATES:
            continue
        lost = _lose_running(txn, run, at_ms, fx, REVOKED_ERROR)
        _pass_unreported_attempts(txn, run, lost, at_ms, fx)
        run["worker"] = None
        fx.fences_changed.append(run_id)
        if run["cancel"]:
            _stop(txn, run, at_ms, fx)
            # The driver would have said how the run ended; none is left to (found by the
            # failover re-probe: the run log ended at "cancel requested by …").
            why = cancel_reason(run.get("cancelBy"), run.get("failReason"))
            line = run_log_line(at_ms, f"run stopped, {why} (its worker {worker_id} was revoked)")
            fx.log_appends.append((run_id, RUN_LOG_TASK, f"{line}\n".encode(), None))
        else:
            _close(txn, run, at_ms, fx)


def apply_release(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.ReleaseRun)
    run = _load(txn, cmd.run_id)
    if (
        run["epoch"] != cmd.epoch
        or run["state"] in TERMINAL_RUN_STATES
        or run["worker"] is None
        or (cmd.worker and cmd.worker != run["worker"])  # only the driver gives a run back
    ):
        return {"released": False}
    _lose_running(txn, run, cmd.at_ms, fx, cmd.lost_error or None)
    run["worker"] = None
    fx.fences_changed.append(cmd.run_id)
    _close(txn, run, cmd.at_ms, fx)
    return {"released": True}


def apply_report(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.ReportTasks)
    run = _load(txn, cmd.run_id)
    if (
        (cmd.term, cmd.epoch) != (run["term"], run["epoch"])
        or run["worker"] is None
        or (cmd.worker and cmd.worker != run["worker"])  # a worker reports only the runs it drives
    ):
        run["staleReports"] += 1
        stamp_noted(run, fx)
        put_header(txn, run)
        fx.stale_reports += 1
        return {"accepted": 0, "stale": len(cmd.tasks), "fenced": True}
    accepted = stale = 0
    ids = txn.get(k.META, k.run_task_ids(cmd.run_id))
    known = None if ids is None else set(ids)  # None: a run stored before the id list existed
    for tid, raw in cmd.tasks.items():
        stored_raw = txn.get(k.META, k.task(cmd.run_id, tid))
        if stored_raw is None and (known is None or tid not in known):
            stale += 1  # not a task of this run
            continue
        stored = UNSTARTED if stored_raw is None else TaskRecord.from_dict(stored_raw)
        reported = TaskRecord.from_dict(raw)
        if reported.attempt_base != stored.attempt_base:
            # The base is the master's (a re-run sets it): a driver neither drops it (an older
            # worker does not know it) nor moves it (a negative count would retry for ever).
            reported = dataclasses.replace(reported, attempt_base=stored.attempt_base)
        verdict = report_verdict(stored, reported)
        if verdict is ReportVerdict.ACCEPT:
            _put_task(txn, run, tid, stored, reported, fx)
            accepted += 1
            fx.task_reports.append((cmd.run_id, tid, stored, reported))
            if reported.is_terminal and reported.ended_at_ms is not None:
                fx.task_ends.append(
                    (
                        reported.state.value,
                        reported.ended_at_ms - (reported.started_at_ms or reported.ended_at_ms),
                    )
                )
        elif verdict is ReportVerdict.STALE:
            stale += 1
    if stale:
        run["staleReports"] += stale
        fx.stale_reports += stale
    _close(txn, run, cmd.at_ms, fx)
    return {"accepted": accepted, "stale": stale, "fenced": False}


def apply_cancel(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.CancelRun)
    run = _load(txn, cmd.run_id)
    if run["state"] in TERMINAL_RUN_STATES:
        if run["state"] == RunState.CANCELLED.value:
            return {"runId": cmd.run_id, "state": run["state"]}
        raise Conflict(f"run {cmd.run_id} already ended {run['state']}")
    if cmd.by:
        run["cancelBy"] = cmd.by
        _master_line(run, cmd.at_ms, f"cancel requested by {cmd.by}", fx)
    return _stop(txn, run, cmd.at_ms, fx, told=bool(cmd.by))


def apply_fail(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    """The run timeout: stopped like a cancel, ended FAILED with the reason recorded."""
    assert isinstance(cmd, c.FailRun)
    run = _load(txn, cmd.run_id)
    if run["state"] in TERMINAL_RUN_STATES:
        return {"runId": cmd.run_id, "state": run["state"]}
    run["failReason"] = cmd.reason
    _master_line(run, cmd.at_ms, f"{cmd.reason}: failing the run, its tasks are cancelled", fx)
    return _stop(txn, run, cmd.at_ms, fx, told=True)


def _master_line(run: dict[str, Any], at_ms: int, text: str, fx: Effects) -> None:
    """A line of the masters' in the run's log, written with the command that it tells of:
    before the run's last line when that command ends the run (written as a proposal of its
    own after it, a cancel's "cancel requested" had come after "run stopped")."""
    if takes_master_lines(run):
        fx.log_appends.append((run["runId"], RUN_LOG_TASK, f"{run_log_line(at_ms, text)}\n".encode(), None))


def _stop(txn: Txn, run: dict[str, Any], at_ms: int, fx: Effects, *, told: bool = False) -> Any:
    """Cancel every task of an unfinished run: queued ones at once, running ones by their
    driver (told through ``fx.cancels``), or at once when no driver holds the run."""
    run_id = run["runId"]
    run["cancel"] = True
    spec = compiled_spec(txn.get(k.META, k.run_spec(run_id)))
    before = _all_tasks(txn, run_id)
    after = dict(advance(spec, before, at_ms, cancelled=True).tasks)
    if run["worker"] is None:
        # No driver to stop anything: whatever was running is gone with the lost driver.
        for tid, rec in after.items():
            if rec.state is TaskState.RUNNING:
                after[tid] = apply_task_event(rec, TaskEvent(TaskEventKind.CANCEL, at_ms))[0]
    else:
        fx.cancels.append((run_id, run["worker"], cancel_reason(run.get("cancelBy"), run.get("failReason"))))
    for tid, rec in after.items():
        old = before.get(tid, UNSTARTED)
        if rec != old:
            _put_task(txn, run, tid, old, rec, fx)
    _close(txn, run, at_ms, fx, told=told)
    return {"runId": run_id, "state": run["state"]}


def apply_rerun(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    """Reopen a finished run: the selected tasks go back to PENDING (attempt numbers kept),
    and the run is PENDING again with no driver: queued like a new run, it starts when its
    DAG's ``max_active_runs``, a pause and maintenance mode allow (another run of a DAG
    allowed one may be running), under a new fence (the last driver's stragglers are
    refused). Its run timeout counts from the re-run, and its SLA too (``fresh_sla``).

    A run whose logs retention purged no longer says so (``logsPurgedMs`` goes): the logs the
    re-run writes are logs like any others, so log retention counts from the run's new end and
    deleting the run deletes them (the old attempts' logs stay gone)."""
    assert isinstance(cmd, c.RerunRun)
    run = _load(txn, cmd.run_id)
    if run["state"] not in TERMINAL_RUN_STATES:
        raise Conflict(f"run {cmd.run_id} is still {run['state']}: wait for it to end (or cancel it) first")
    if cmd.dag_must_exist and txn.get(k.META, k.dag(run["dagId"])) is None:
        raise Conflict(
            f"DAG {run['dagId']!r} was deleted: its runs can be read and deleted, not re-run "
            "(register the DAG again to re-run them)"
        )
    spec = compiled_spec(txn.get(k.META, k.run_spec(cmd.run_id)))
    before = _all_tasks(txn, cmd.run_id)
    selection = rerun_selection(spec, before, RerunRequest(cmd.from_task, cmd.only_failed))
    for tid, rec in reset_records(before, selection, cmd.at_ms).items():
        _put_task(txn, run, tid, before[tid], rec, fx)
    run.update(
        state=(RunState.PENDING if cmd.queued else RunState.RUNNING).value,
        endedMs=None,
        worker=None,
        cancel=False,
        cancelBy=None,
        failReason=None,
        reruns=run.get("reruns", 0) + 1,
        lastRerun={"atMs": cmd.at_ms, "by": cmd.by, "from": cmd.from_task, "onlyFailed": cmd.only_failed},
    )
    run.pop("logsPurgedMs", None)
    if cmd.fresh_sla:  # its SLA is measured from the re-run (kiok.core.notify), and may be missed again
        run["lastRerun"]["freshSla"] = True
        run["slaMissed"] = False
    txn.put(k.META, k.active_run(cmd.run_id), {"dagId": run["dagId"], "seq": run["seq"]})
    fx.fences_changed.append(cmd.run_id)
    fx.runs_reopened.append(cmd.run_id)
    _close(txn, run, cmd.at_ms, fx)
    return {"runId": cmd.run_id, "tasks": list(selection)}
