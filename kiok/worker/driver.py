"""The driver: walks one run's graph on this worker and runs its ready tasks in local slots.

Every decision comes from ``kiok.core`` (``advance`` for readiness/skips/retries, the
transition table for attempt outcomes); this loop only starts attempts, waits, and sends
every changed task record to the masters under the run's fence. It keeps no state the
masters do not also get, so a new driver given the same run resumes where this one
stopped: finished tasks stay finished, tasks that were running run again as a new attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from kiok import logs
from kiok.core.frontier import Frontier
from kiok.core.interruption import (
    RUN_CANCELLED,
    interrupted_attempt,
    interrupted_lines,
    stopped_line,
)
from kiok.core.placeholders import Context, has_placeholders, param_env, param_values, resolve
from kiok.core.placement import shell_value_problem
from kiok.core.retry import fail_event, timeout_ms_for
from kiok.core.run_interval import interval_env, interval_values, run_interval
from kiok.core.runlog import run_log_line
from kiok.core.states import RunState, TaskRecord, TaskState
from kiok.core.timefmt import iso_utc
from kiok.core.tracecontext import attempt_traceparent
from kiok.core.transitions import TaskEvent, TaskEventKind, apply_task_event
from kiok.dag.load import compiled_spec
from kiok.dag.spec import TaskSpec, TaskType
from kiok.errors import TaskError
from kiok.ids import RUN_LOG_TASK, TaskId
from kiok.protocol.link import MasterLink
from kiok.protocol.messages import Assignment
from kiok.security.masking import Masker
from kiok.waits import wait_set
from kiok.worker.executors.base import AttemptContext, AttemptResult, Executor
from kiok.worker.fenced_logs import FencedLogs
from kiok.worker.logship import TaskLog
from kiok.worker.process import WorkDirs
from kiok.worker.slots import TaskSlots
from kiok.worker.stop import StopSignal

log = logging.getLogger(__name__)

_TAIL_BYTES = 4096
#: Larger reports are split: the masters apply each between other work, so a run that
#: queues 500 tasks at once does not hold up the starting of tasks while it is recorded.
_REPORT_MAX_TASKS = 64


@dataclass
class DriverEnv:
    """What all drivers on one worker share."""

    worker_id: str
    link: MasterLink
    slots: TaskSlots
    executors: Mapping[TaskType, Executor]
    work_dirs: WorkDirs
    default_timeout_ms: int
    retry_cap_ms: int
    kill_grace_s: float
    #: How long state changes gather before one report carries them.
    report_linger_s: float
    log_batch_bytes: int
    log_interval_s: float
    log_cap_bytes: int
    clock_ms: Callable[[], int]


class RunDriver:
    def __init__(self, assignment: Assignment, env: DriverEnv) -> None:
        self.assignment = assignment
        self.run_id = assignment.run_id
        self.fence = assignment.fence
        self._env = env
        self._spec = compiled_spec(assignment.spec)
        self._masker = Masker(v for props in assignment.secrets.values() for v in props.values())
        #: Per task, whether its log as this driver last wrote it ends mid-line.
        self._lines_open: dict[TaskId, bool] = {}
        #: The schedule interval the run stands for (``${run.interval.*}``, ``KIOK_INTERVAL_*``).
        self._interval = run_interval(
            self._spec.schedule, self._spec.timezone, assignment.scheduled_ms, assignment.created_ms
        )
        records = {  # a task without a record is unstarted (all of them in a new run)
            TaskId(t.id): TaskRecord.from_dict(raw)
            for t in self._spec.tasks
            if (raw := assignment.tasks.get(t.id))
        }
        self._frontier = Frontier(self._spec, records)
        self._tasks = self._frontier.tasks
        self._attempts: dict[TaskId, asyncio.Task[None]] = {}
        #: QUEUED tasks waiting for a slot, in the order they became ready.
        self._queue: deque[TaskId] = deque()
        self._stops: dict[TaskId, StopSignal] = {}
        self._cancelled = assignment.cancel
        #: ``abandon`` at the worker's shutdown: each attempt it stops ends its log saying so.
        self._stopped_at_shutdown = False
        #: What each attempt the cancel stops says in its log (``kiok.core.interruption``).
        self._cancel_reason = RUN_CANCELLED
        self._wake = asyncio.Event()
        self._outbox: dict[TaskId, TaskRecord] = {}
        self._flush_scheduled = False
        self._logs = FencedLogs(env.link, self.fence)
        self._runlog = self._task_log(RUN_LOG_TASK)
        self.state: RunState | None = None
        self._fenced_out = False

    # --- control -------------------------------------------------------------------------

    def cancel(self, reason: str = "") -> None:
        """Stop the run: queued tasks are cancelled, running ones get their process group
        signalled (SIGTERM, grace, SIGKILL) and end CANCELLED. ``reason`` (who cancelled, or
        why the run was failed) ends each stopped attempt's log line; empty: not known."""
        if not self._cancelled:
            self._cancelled = True
            self._cancel_reason = reason or RUN_CANCELLED
            # The masters' line said who asked (or why the run is failed): this one says
            # what the worker does about it.
            running = len(self._stops)
            self._event(
                f"stopping {running} running task{'' if running == 1 else 's'}; no other task starts"
                if running
                else "no task running; no other task starts"
            )
            for stop in self._stops.values():
                stop.set()
            self._wake.set()

    async def abandon(self, *, shutdown: bool = False) -> None:
        """Stop everything without reporting further (the run now belongs elsewhere, or goes
        back to the masters: ``shutdown``, the worker stops; each attempt it stops says so)."""
        self._stopped_at_shutdown = shutdown
        self._outbox.clear()
        self._fenced_out = True
        self._start_nothing_more()
        for stop in self._stops.values():
            stop.set()
        for attempt in list(self._attempts.values()):
            attempt.cancel()
        await asyncio.gather(*self._attempts.values(), return_exceptions=True)
        for tid in list(self._attempts):  # cancelled before their first step: never ran
            self._attempt_over(tid)
        self.assignment.secrets.clear()  # nothing runs any more that may need them

    # --- the walk --------------------------------------------------------------------------

    async def drive(self) -> RunState:
        try:
            return await self._walk()
        finally:
            # However the walk ends (the run finished, or the walk was cancelled or failed).
            self._start_nothing_more()

    async def _walk(self) -> RunState:
        self._event(f"driving on worker {self._env.worker_id} (fence {self.fence.term}/{self.fence.epoch})")
        for tid, rec in list(self._tasks.items()):
            if rec.state is TaskState.RUNNING:  # defensive: the master normally marks these lost
                self._set(tid, apply_task_event(rec, TaskEvent(TaskEventKind.LOST, self._env.clock_ms()))[0])
        # Tasks handed over already QUEUED (a resumed run) start like newly ready ones.
        ready: list[TaskId] = [tid for tid, rec in self._tasks.items() if rec.state is TaskState.QUEUED]
        while True:
            now = self._env.clock_ms()
            adv = self._frontier.advance(now, cancelled=self._cancelled)
            for tid in adv.changed:
                rec = adv.tasks[tid]
                if rec.state is TaskState.QUEUED:
                    ready.append(tid)
                    if rec.attempt == 0:
                        # Queued for its first attempt: not reported. The masters see the
                        # same thing in its upstreams' records (``kiok.core.waiting``), and a
                        # run that queues 500 tasks at once would otherwise write 500 records.
                        continue
                elif rec.state in (TaskState.SKIPPED, TaskState.CANCELLED):
                    self._event(f"{tid} {rec.state.value.upper()}")
                self._set(tid, rec)
            self._queue.extend(ready)
            ready.clear()
            self._pump()
            if adv.run_state is not None and not self._attempts:
                self.state = adv.run_state
                # The masters say how the run ended, as they end it (``kiok.store.apply_runs.
                # _close``): a line of the driver's after its last report could be refused.
                self._runlog.close()
                if self._env.link.may_be_cut_off:
                    self.report_all()  # the run's whole outcome: see ``MasterLink.may_be_cut_off``
                else:
                    self.flush_reports()
                return adv.run_state
            self._wake.clear()
            timeout = None if adv.next_wakeup_ms is None else max(0.0, (adv.next_wakeup_ms - now) / 1000)
            await wait_set(self._wake, timeout)

    def _start_nothing_more(self) -> None:
        """Leave the slots' line (a driver in it would start its queued tasks) and the queue."""
        self._env.slots.leave(self._pump)
        self._queue.clear()

    def _pump(self) -> None:
        """Start queued tasks while the worker has free slots; without one, wait in line."""
        queue = self._queue
        while queue:
            tid = queue[0]
            if self._fenced_out or tid in self._attempts or self._tasks[tid].state is not TaskState.QUEUED:
                queue.popleft()  # cancelled, or started already
                continue
            if not self._env.slots.try_take():
                self._env.slots.wait(self._pump)
                return
            queue.popleft()
            self._attempts[tid] = asyncio.create_task(self._attempt(tid))

    async def _attempt(self, tid: TaskId) -> None:
        """One attempt of ``tid``, in the slot ``_pump`` took for it."""
        logs.RUN_ID.set(self.run_id)  # this task's context (``_pump`` may run in another's)
        logs.TASK_ID.set(tid)
        try:
            await self._env.link.acquire_task_permit()
            try:
                if self._cancelled or self._tasks[tid].state is not TaskState.QUEUED:
                    return
                if not self._env.link.starts_in_reports and any(
                    up in self._outbox for up in self._spec.task(tid).requires
                ):
                    # Its upstreams' ends go first (the link keeps order): a start committed
                    # before them would have a next driver run it before they succeed again.
                    # (In one process they go with the start, in one report: no flush.)
                    self.flush_reports()
                now = self._env.clock_ms()
                before = self._tasks[tid]
                rec, _ = apply_task_event(
                    before, TaskEvent(TaskEventKind.START, now, worker=self._env.worker_id)
                )
                self._set(tid, rec)
                if not await self._env.link.confirm_start(self.run_id, self.fence, tid, rec.to_dict()):
                    return  # the run moved to another driver: this one is being stopped
                if self._cancelled:
                    # Cancelled while the start was confirmed: the cancel committed first
                    # (the masters hold the task CANCELLED), so this attempt never runs.
                    self._finish(tid, rec.attempt, AttemptResult(False, error="cancelled", stopped=True))
                    return
                lost = interrupted_attempt(before)
                notes: list[str] = []
                if lost is not None:
                    note, event = interrupted_lines(tid, lost, before.worker, before.error)
                    notes.append(note)
                    self._event(event)
                self._event(f"{tid} attempt {rec.attempt} started")
                result = await self._execute(self._spec.task(tid), rec.attempt, notes)
                self._finish(tid, rec.attempt, result)
            finally:
                self._env.link.release_task_permit()
        finally:
            self._attempt_over(tid)

    def _attempt_over(self, tid: TaskId) -> None:
        if self._attempts.pop(tid, None) is not None:
            self._env.slots.release()  # may start the next queued task, of this run or another
        self._wake.set()

    def _finish(self, tid: TaskId, attempt: int, result: AttemptResult) -> None:
        now = self._env.clock_ms()
        task = self._spec.task(tid)
        if result.ok:
            ev = TaskEvent(TaskEventKind.SUCCEED, now, exit_code=result.exit_code)
        elif result.stopped and self._cancelled:
            ev = TaskEvent(TaskEventKind.CANCEL, now, exit_code=result.exit_code, error="cancelled")
        else:
            ev = fail_event(
                task,
                attempt - self._tasks[tid].attempt_base,  # a re-run gets its retries again
                now,
                cap_ms=self._env.retry_cap_ms,
                exit_code=result.exit_code,
                error=result.error,
            )
        if ev.error is not None and not result.error_masked:  # it may quote the task's output
            ev = replace(ev, error=self._masker.mask_text(ev.error))
        rec, _ = apply_task_event(self._tasks[tid], ev)
        self._set(tid, rec)
        started = rec.started_at_ms or now
        # Why it failed, when known ("timed out after 1s", "ValueError: …"), for a retried
        # attempt as for the last; else its exit code, or an http task's status ("HTTP 200").
        if result.error:
            detail = result.error
        elif result.exit_code is not None:
            detail = f"exit code {result.exit_code}"
        else:
            detail = result.detail or ""
        if rec.state is TaskState.RETRYING and rec.retry_at_ms is not None:
            detail += f"; retry at {iso_utc(rec.retry_at_ms)}"
        self._event(
            f"{tid} attempt {attempt} {rec.state.value.upper()} ({detail}, {(now - started) / 1000:.3f}s)"
        )

    async def _execute(self, task: TaskSpec, attempt: int, notes: list[str]) -> AttemptResult:
        tid = task.id
        # kiok's lines (notes, the attempt's separator) start a line of their own: after this
        # driver's earlier attempt as it ended; after another driver's, not known, on a new
        # line (found by the attack probe: "partial[kiok] --- attempt 2 ---" read as output).
        tlog = self._task_log(tid, line_open=self._lines_open.get(tid, attempt > 1 or bool(notes)))
        for note in notes:
            tlog.line(note)
        if attempt > 1:
            tlog.line(f"[kiok] --- attempt {attempt} ---")
        tail: deque[bytes] = deque()
        tail_size = [0]
        clipped = [False]  # whether the tail lost the output's start: it may begin in a secret

        def output(data: bytes) -> None:
            tlog.write(data)
            tail.append(data[-_TAIL_BYTES:])
            tail_size[0] += len(tail[-1])
            clipped[0] = clipped[0] or len(data) > _TAIL_BYTES
            while tail_size[0] > _TAIL_BYTES and len(tail) > 1:
                tail_size[0] -= len(tail.popleft())
                clipped[0] = True

        def masked_tail() -> bytes:
            """The output's tail as an error quotes it: the start of a secret it ends with
            masked, and the end of one it begins with when it was cut there (an output that
            begins so is not: its first letters are no secret's)."""
            data = b"".join(tail)
            return self._masker.mask_fragment(data) if clipped[0] else self._masker.mask_cut(data)

        stop = StopSignal()
        if self._cancelled:
            stop.set()
        self._stops[tid] = stop
        try:
            now = self._env.clock_ms()
            try:
                params = param_values(
                    self._spec.params, self.assignment.args, now_ms=now, tz=self._spec.timezone
                )
                if task.type is TaskType.SHELL:
                    _refuse_shell_unsafe(params)
                resolved = self._resolve(task, params, now)
            except TaskError as e:
                tlog.line(f"[kiok] {e.message}")
                return AttemptResult(False, error=e.message)
            work_dir = self._env.work_dirs.take()
            ctx = AttemptContext(
                run_id=self.run_id,
                task=resolved,
                attempt=attempt,
                work_dir=work_dir,
                env=self._task_env(tid, attempt, params),
                timeout_s=timeout_ms_for(task, self._spec.default_timeout_ms, self._env.default_timeout_ms)
                / 1000,
                grace_s=self._env.kill_grace_s,
                stop=stop,
                output=output,
                tail=masked_tail,
                python=self._spec.python_for(task),
                note=tlog.line,
                mask=self._masker.mask_str,
            )
            try:
                result = await self._env.executors[task.type].run(ctx)
            except asyncio.CancelledError:  # ``abandon``: at shutdown, the attempt's log says so
                if self._stopped_at_shutdown:
                    tlog.line(
                        stopped_line(
                            attempt,
                            timed_out=False,
                            cancelled=None,
                            timeout_s=ctx.timeout_s,
                            grace_s=ctx.grace_s,
                            process=task.type is not TaskType.HTTP,
                            shutdown=True,
                        )
                    )
                raise
            except OSError as e:
                result = AttemptResult(False, error=f"could not start task: {e}")
            except Exception as e:  # an executor's bug must end the attempt too
                # Raised out of an executor, it would end this coroutine and leave the task
                # RUNNING for good, past its timeout and any cancel. Its message may quote
                # what the task resolved (a secret): masked, and no traceback.
                error = self._masker.mask_text(f"{type(e).__name__}: {e}")
                log.error(
                    "task %s attempt %d: the %s executor failed: %s", tid, attempt, task.type.value, error
                )
                result = AttemptResult(False, error=f"kiok could not run the task: {error}")
            if result.timed_out or result.stopped:
                tlog.line(
                    stopped_line(
                        attempt,
                        timed_out=result.timed_out,
                        cancelled=self._cancel_reason if self._cancelled else None,
                        timeout_s=ctx.timeout_s,
                        grace_s=ctx.grace_s,
                        process=task.type is not TaskType.HTTP,
                    )
                )
            # Only an attempt that ran to its end is done with its directory. One cancelled
            # under us (``abandon``) may still have a process being stopped in it: that
            # directory is never handed out again (its spawner still empties it).
            self._env.work_dirs.give_back(work_dir)
            return result
        finally:
            self._stops.pop(tid, None)
            tlog.close()
            self._lines_open[tid] = tlog.line_open

    # --- helpers ---------------------------------------------------------------------------

    def _resolve(self, task: TaskSpec, params: Mapping[str, Any], now: int) -> TaskSpec:
        """Placeholders are resolved here, in memory, just before the attempt runs; params
        are placed as data for the language of each text (``kiok.core.placement``)."""
        if not has_placeholders(task.script or "") and not any(map(has_placeholders, task.config.values())):
            return task
        secrets = self.assignment.secrets

        def lookup(conn_id: str, key: str) -> str:
            if conn_id not in secrets:
                raise TaskError(f"unknown connection {conn_id!r} (create it: POST /api/v1/connections)")
            return secrets[conn_id][key]

        tz = self._spec.timezone
        run_values = interval_values(self._interval)

        def sub(text: str, context: Context) -> str:
            return resolve(
                text, params=params, lookup_conn=lookup, now_ms=now, tz=tz, context=context, run=run_values
            )

        script_context = Context.PYTHON if task.type is TaskType.PYTHON else Context.SHELL
        script = sub(task.script, script_context) if task.script is not None else None
        config = {k: sub(v, _config_context(k, v, task.config)) for k, v in task.config.items()}
        return replace(task, script=script, config=config)

    def _task_env(self, tid: str, attempt: int, params: Mapping[str, Any]) -> dict[str, str]:
        """What this attempt adds to the worker's task environment (``base_task_env``)."""
        env = param_env(params)
        env.update(
            KIOK_RUN_ID=self.run_id,
            KIOK_DAG_ID=self._spec.id,
            KIOK_TASK_ID=tid,
            KIOK_ATTEMPT=str(attempt),
        )
        if self.assignment.scheduled_ms is not None:
            env["KIOK_SCHEDULED_TIME"] = iso_utc(self.assignment.scheduled_ms)
        env.update(interval_env(self._interval))
        run_tp = self.assignment.traceparent
        attempt_tp = attempt_traceparent(run_tp, tid, attempt) if run_tp else None
        if attempt_tp is not None:  # the attempt's span: the task's own spans join the run's trace
            env["TRACEPARENT"] = attempt_tp
        return env

    def _task_log(self, tid: str, *, line_open: bool = False) -> TaskLog:
        return TaskLog(
            self._logs,
            self.run_id,
            tid,
            batch_bytes=self._env.log_batch_bytes,
            interval_s=self._env.log_interval_s,
            cap_bytes=self._env.log_cap_bytes,
            masker=self._masker,
            line_open=line_open,
        )

    def _event(self, text: str) -> None:
        self._runlog.line(run_log_line(self._env.clock_ms(), text))

    def _set(self, tid: TaskId, rec: TaskRecord) -> None:
        self._frontier.set(tid, rec)
        if self._fenced_out:
            return
        self._outbox[tid] = rec  # encoded when sent: a later change within the linger replaces it
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(self._env.report_linger_s, self.flush_reports)

    def report_all(self) -> None:
        """Send every task record past its first start, changed or not: after a reconnect the
        masters' copy may be older than this driver's (restored from a backup taken before
        the driver's acknowledged reports), and a start committed over an upstream the masters
        still hold RUNNING would have a next driver run both again at once."""
        for tid, rec in self._tasks.items():
            if rec.attempt > 0 or rec.state is not TaskState.PENDING:
                self._outbox[tid] = rec
        self.flush_reports()

    def flush_reports(self) -> None:
        """Send the state changes gathered so far (they are otherwise sent after the linger)."""
        self._flush_scheduled = False
        if self._outbox and not self._fenced_out:
            if any(rec.is_terminal for rec in self._outbox.values()):
                # The run log's lines so far (" c attempt 1 SUCCESS" …) go before the report
                # that ends a task, so they travel in the outbox with it: a worker killed
                # right after would otherwise lose them with its 2 s batch timer.
                self._runlog.flush()
            changes, self._outbox = [(tid, rec.to_dict()) for tid, rec in self._outbox.items()], {}
            for i in range(0, len(changes), _REPORT_MAX_TASKS):
                self._env.link.report_tasks(self.run_id, self.fence, dict(changes[i : i + _REPORT_MAX_TASKS]))


def _refuse_shell_unsafe(params: Mapping[str, Any]) -> None:
    """``TaskError`` for a value a shell task must not get in its environment at all, even
    one its script does not place (``kiok.core.placement.shell_value_problem``)."""
    for name, value in params.items():
        problem = shell_value_problem(name, value)
        if problem is not None:
            raise TaskError(problem)


def _config_context(key: str, value: str, config: Mapping[str, str]) -> Context:
    """How a param is placed in an http task's config value: the URL percent-encoded, JSON
    (body or headers) JSON-escaped, a form body form-encoded."""
    if key == "url":
        return Context.URL
    if key == "headers":
        return Context.JSON
    if key == "body":
        if value.lstrip().startswith(("{", "[")):
            return Context.JSON
        if "application/x-www-form-urlencoded" in config.get("headers", "").lower():
            return Context.FORM
    return Context.TEXT


#: What of the worker's environment is kiok's, never a task's: its settings and secrets
#: (``KIOK_``), the AWS configuration its S3 client reads when no key is set (boto3's chain:
#: keys, session tokens, profiles and the files naming them; found by the security probe of
#: session 27, a task could use kiok's log-archive and backup bucket), and the settings of
#: its trace exporter (headers, an endpoint with a password in it, client keys: its
#: collector's credentials). A task that needs credentials gets them from a connection
#: (``${conn.<id>.<key>}``, masked in its output).
_KIOKS_OWN_PREFIXES = ("KIOK_", "AWS_", "OTEL_EXPORTER_OTLP_")


def base_task_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment tasks inherit: the worker's, minus what is kiok's own."""
    return {k: v for k, v in environ.items() if not k.startswith(_KIOKS_OWN_PREFIXES)}


__all__ = ["DriverEnv", "RunDriver", "base_task_env"]
