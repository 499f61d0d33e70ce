"""Turning stored records into the API's JSON shapes (DESIGN.md §5): ISO-8601 UTC times,
camelCase keys, and for every task that is not running the reason it waits.

A task's output is log data (``logs:Read``), its state, timings and kiok's own error
messages are run data (``runs:Read``): a view made with ``output=False`` shows each task's
``error`` without what it quotes of the task's output (``own_error``)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from kiok.core.states import RunState, TaskRecord, TaskState
from kiok.core.timefmt import iso_millis
from kiok.core.waiting import presented_one, task_wait_reason
from kiok.dag.spec import DagSpec
from kiok.ids import TaskId


def iso(ms: int | None) -> str | None:
    return None if ms is None else iso_millis(ms)


def dag_view(record: dict[str, Any], *, full: bool = False) -> dict[str, Any]:
    dag = record["spec"]["dag"]
    view: dict[str, Any] = {
        "dagId": dag["id"],
        "name": dag.get("name", dag["id"]),
        "description": dag.get("description", ""),
        "schedule": dag.get("schedule"),
        "timezone": dag.get("timezone", "UTC"),
        "catchup": dag.get("catchup", False),
        "maxActiveRuns": dag.get("max_active_runs"),
        "labels": dag.get("labels", []),
        "paused": record["paused"],
        "tasks": len(record["spec"]["tasks"]),
        "version": record["version"],
        "registeredAt": iso(record["registeredMs"]),
        "updatedAt": iso(record["updatedMs"]),
    }
    if full:
        view["spec"] = record["spec"]
        view["source"] = record.get("source")
    return view


def run_view(
    run: dict[str, Any], spec: DagSpec, run_waiting: str | None, now_ms: int, *, output: bool = True
) -> dict[str, Any]:
    """The whole run view; ``output``: whether the caller may read the tasks' output."""
    state = run["state"]
    shown = PresentedRecords(
        spec,
        {TaskId(t): TaskRecord.from_dict(r) for t, r in run["tasks"].items()},
        driven=state == RunState.RUNNING.value and run["worker"] is not None,
    )
    tasks = {
        t.id: task_view(spec, shown, t.id, state, run_waiting, now_ms, output=output) for t in spec.tasks
    }
    return {**run_fields(run, run_waiting), "version": run.get("version", 0), "full": True, "tasks": tasks}


class PresentedRecords(Mapping[TaskId, TaskRecord]):
    """A run's task records as the API shows them (``presented_one``), each worked out on
    first use: a view brought up to date for a few tasks reads only those and their
    upstreams."""

    def __init__(self, spec: DagSpec, records: Mapping[TaskId, TaskRecord], *, driven: bool) -> None:
        self._spec, self._records, self._driven = spec, records, driven
        self._ids = frozenset(spec.task_ids)
        self._memo: dict[TaskId, TaskRecord] = {}

    def __getitem__(self, task_id: TaskId) -> TaskRecord:
        rec = self._memo.get(task_id)
        if rec is None:
            if task_id not in self._ids:
                raise KeyError(task_id)
            rec = presented_one(self._spec, self._records, task_id, driven=self._driven)
            self._memo[task_id] = rec
        return rec

    def __iter__(self) -> Iterator[TaskId]:
        return iter(self._spec.task_ids)

    def __len__(self) -> int:
        return len(self._ids)


def task_view(
    spec: DagSpec,
    shown: Mapping[TaskId, TaskRecord],
    task_id: TaskId,
    run_state: str,
    run_waiting: str | None,
    now_ms: int,
    *,
    output: bool = True,
) -> dict[str, Any]:
    """One task of a run view; ``shown`` is the run's presented records."""
    waiting = task_waiting(spec, shown, task_id, run_state, run_waiting, now_ms)
    return task_fields(shown[task_id], waiting, output=output)


def task_waiting(
    spec: DagSpec,
    shown: Mapping[TaskId, TaskRecord],
    task_id: TaskId,
    run_state: str,
    run_waiting: str | None,
    now_ms: int,
) -> str | None:
    """Why a task of a run view waits (``None``: it is running or ended)."""
    rec = shown[task_id]
    if rec.state is TaskState.RUNNING or rec.is_terminal:
        return None
    waiting = run_waiting if (run_waiting and run_state == RunState.PENDING.value) else None
    return waiting or task_wait_reason(spec, shown, task_id, now_ms)


#: The forms of ``error`` that quote a task's output: a python task's last output line, then
#: kiok's own ``(exit code N)`` (``kiok.worker.executors.python``); what an http task's server
#: sent, then ``(<failure> from <method> <url>)`` (``kiok.worker.executors.http``). No other
#: error kiok writes ends so (an http task's URL is shown with its whitespace escaped, so no
#: URL ends another error so); the quote is cut, kiok's part kept. The last such part is
#: kiok's (the quote comes before it, whatever it holds), hence the greedy start.
_QUOTES_OUTPUT = re.compile(r".+ \((exit code (?:-?\d+|None)|[A-Za-z]+ from [A-Z]+ \S+)\)", re.DOTALL)


def own_error(error: str | None) -> str | None:
    """``error`` as a caller without ``logs:Read`` reads it: kiok's own message (exit code,
    signal, timeout, cancelled, …) without the line of the task's output it may quote,
    which can hold whatever the task printed (a password, a customer's data)."""
    if error is None:
        return None
    quoted = _QUOTES_OUTPUT.fullmatch(error)
    return error if quoted is None else quoted.group(1)


def quotes_output(rec: TaskRecord) -> bool:
    """Whether ``rec``'s view differs for a caller without ``logs:Read``."""
    return rec.error is not None and own_error(rec.error) != rec.error


def task_fields(rec: TaskRecord, waiting: str | None, *, output: bool = True) -> dict[str, Any]:
    """A task's view from its presented record and why it waits; ``output``: whether the
    caller may read the task's output (else ``error`` is ``own_error``)."""
    return {
        "state": rec.state.value,
        "attempt": rec.attempt,
        "worker": rec.worker,
        "startedAt": iso(rec.started_at_ms),
        "endedAt": iso(rec.ended_at_ms),
        "exitCode": rec.exit_code,
        "error": rec.error if output else own_error(rec.error),
        "retryAt": iso(rec.retry_at_ms),
        "waiting": waiting,
    }


_TASK_JSON = (
    '{"state":"%s","attempt":%d,"worker":%s,"startedAt":%s,"endedAt":%s,"exitCode":%s,'
    '"error":%s,"retryAt":%s,"waiting":%s}'
)


def task_json(rec: TaskRecord, waiting: str | None, *, output: bool = True) -> bytes:
    """``task_fields`` encoded as compact JSON, byte for byte what ``json`` makes of it
    (a test pins that), in a third of the time: a read of a run in flight re-encodes the
    views of every task that moved since the last read."""
    return (
        _TASK_JSON
        % (
            rec.state.value,
            rec.attempt,
            _str(rec.worker),
            _time(rec.started_at_ms),
            _time(rec.ended_at_ms),
            "null" if rec.exit_code is None else int(rec.exit_code),
            _str(rec.error if output else own_error(rec.error)),
            _time(rec.retry_at_ms),
            _str(waiting),
        )
    ).encode()


def _str(text: str | None) -> str:
    return "null" if text is None else encode_basestring_ascii(text)


def _time(ms: int | None) -> str:
    return "null" if ms is None else f'"{iso_millis(ms)}"'


def run_fields(run: dict[str, Any], run_waiting: str | None) -> dict[str, Any]:
    """A run's own fields, without its tasks (a run view, and a list's run summary)."""
    state = run["state"]
    if state == RunState.RUNNING.value and run["worker"] is None:
        run_waiting = (
            run_waiting or "waiting for a new driver (the previous one was lost or gave the run back)"
        )
    return {
        "runId": run["runId"],
        "dagId": run["dagId"],
        "state": state,
        "trigger": run["trigger"],
        #: Who triggered or backfilled it (null for the scheduler's runs and older ones).
        "triggeredBy": run.get("triggeredBy"),
        "args": finite(run["args"]),
        "createdAt": iso(run["createdMs"]),
        "scheduledAt": iso(run["scheduledMs"]),
        "startedAt": iso(run["startedMs"]),
        "endedAt": iso(run["endedMs"]),
        "worker": run["worker"],
        "cancelRequested": run["cancel"],
        "waiting": run_waiting if state in (RunState.PENDING.value, RunState.RUNNING.value) else None,
        "staleReports": run["staleReports"],
        "dagVersion": run.get("dagVersion"),
        #: Why the run ended other than by its tasks (the run timeout), else null.
        "reason": run.get("failReason"),
        "reruns": run.get("reruns", 0),
        "lastRerun": _last_rerun(run.get("lastRerun")),
        "interval": _interval(run.get("interval")),
        #: When log retention deleted the run's job logs (they read as empty), else null.
        "logsPurgedAt": iso(run.get("logsPurgedMs")),
    }


def finite(value: Any) -> Any:
    """``value`` with each NaN or infinite float as the text the task got for it
    (``"Infinity"``): API responses are encoded with ``allow_nan=False``, and args stored
    before ``kiok.dag.params`` refused numbers past a float (``"1e999"``) must still read as
    JSON, not as a 500. Args are small and bounded in depth (``kiok.dag.params``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def _last_rerun(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """The last re-run: who asked, when, of what, and when it got its driver (null while it
    waits): what the run's own ``startedAt``, first given, does not say."""
    if raw is None:
        return None
    return {
        "requestedAt": iso(raw["atMs"]),
        "startedAt": iso(raw.get("startedMs")),
        "by": raw.get("by"),
        "from": raw.get("from"),
        "onlyFailed": raw.get("onlyFailed"),
    }


def _interval(raw: dict[str, int] | None) -> dict[str, str | None] | None:
    """The schedule interval a backfilled run stands for, ``[start, end)``."""
    return None if raw is None else {"start": iso(raw["startMs"]), "end": iso(raw["endMs"])}
