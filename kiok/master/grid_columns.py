"""The grid's columns (``GET /api/v1/dags/{dagId}/grid``): one run's cells, attempts,
durations and workers for a list of tasks, encoded as a JSON fragment, and a cache of the
columns of finished runs.

A finished run's column never changes unless the run changes, and every change of a run
(a re-run, a late record) bumps the ``version`` that ``apply()`` stamps on its header
(``kiok.store.run_version``). So a column is kept under the run's id with the version (and
end time) it was built at and the task list it was built for; a read compares them with the
header it just read (one key) and rebuilds on any difference. Unfinished runs are always
built afresh: their durations grow with the clock. Deleted runs are dropped by the command
log's effects; the cache is bounded by the bytes it holds, the least recently read first. (A
restored backup brings a run back at a version it had, with the records it had then, so a
kept column still matches it.)
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kiok.core.states import TERMINAL_RUN_STATES, RunState, TaskRecord, TaskState
from kiok.core.waiting import presented
from kiok.dag.spec import DagSpec
from kiok.ids import TaskId
from kiok.master.views import iso
from kiok.store.effects import Effects
from kiok.store.reader import StateReader

#: One letter per task state; ``-``: the task is not in that run (another DAG version).
CODES: dict[str, str] = {
    TaskState.PENDING.value: "P",
    TaskState.QUEUED.value: "Q",
    TaskState.RUNNING.value: "R",
    TaskState.RETRYING.value: "U",
    TaskState.SUCCESS.value: "S",
    TaskState.FAILED.value: "F",
    TaskState.SKIPPED.value: "K",
    TaskState.CANCELLED.value: "C",
}
ABSENT = "-"
#: Bytes of encoded columns kept (a finished 500-task run's column is about 5 KB).
MAX_BYTES = 16 * 1024 * 1024
_TERMINAL = frozenset(s.value for s in TERMINAL_RUN_STATES)
#: JSON proper, as every API response (``kiok.master.run_cache``); a column holds no float.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def column(run: dict[str, Any], spec: DagSpec, tasks: list[str], now_ms: int) -> dict[str, Any]:
    """The grid column of ``run`` (a header with ``tasks``, as ``StateReader.run`` gives it)
    for ``tasks``: its state letter per task, ``[index, attempt]`` where the attempt is above
    1, the duration per started task, and an index per started task into the run's own
    ``workers`` (per run, so that a column can be kept encoded on its own)."""
    records = presented(
        spec,
        {TaskId(t): TaskRecord.from_dict(r) for t, r in run["tasks"].items()},
        driven=run["state"] == RunState.RUNNING.value and run["worker"] is not None,
    )
    cells: list[str] = []
    attempts: list[list[int]] = []
    durations: list[int | None] = []
    where: list[int | None] = []
    workers: dict[str, int] = {}
    for i, tid in enumerate(tasks):
        rec = records.get(TaskId(tid))
        if rec is None:
            cells.append(ABSENT)
            durations.append(None)
            where.append(None)
            continue
        cells.append(CODES[rec.state.value])
        if rec.attempt > 1:
            attempts.append([i, rec.attempt])
        started, ended = rec.started_at_ms, rec.ended_at_ms
        durations.append(None if started is None else (ended if ended is not None else now_ms) - started)
        where.append(None if rec.worker is None else workers.setdefault(rec.worker, len(workers)))
    return {
        "runId": run["runId"],
        "state": run["state"],
        "createdAt": iso(run["createdMs"]),
        "scheduledAt": iso(run["scheduledMs"]),
        "startedAt": iso(run["startedMs"]),
        "endedAt": iso(run["endedMs"]),
        "cells": "".join(cells),
        "attempts": attempts,
        "durationsMs": durations,
        "workers": list(workers),
        "workerIndex": where,
    }


@dataclass(frozen=True)
class _Kept:
    key: tuple[int, int | None]
    tasks: list[str]
    body: bytes


class GridColumns:
    """Encoded grid columns; ``encoded`` is all the API calls."""

    def __init__(
        self,
        reader: StateReader,
        spec_of: Callable[[str], DagSpec],
        clock_ms: Callable[[], int],
        *,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._reader = reader
        self._spec_of = spec_of
        self._clock_ms = clock_ms
        self._max_bytes = max_bytes
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._bytes = 0
        #: Columns answered from the cache, and columns built.
        self.hits = 0
        self.builds = 0

    def encoded(self, header: dict[str, Any], tasks: list[str]) -> bytes | None:
        """The column of the run whose header (without tasks) is ``header``, for ``tasks``,
        as JSON; None when the run has gone since the header was read."""
        run_id: str = header["runId"]
        finished = header["state"] in _TERMINAL
        key = (int(header.get("version", 0)), header.get("endedMs"))
        kept = self._kept.get(run_id)
        if finished and kept is not None and kept.key == key and kept.tasks == tasks:
            self._kept.move_to_end(run_id)
            self.hits += 1
            return kept.body
        run = self._reader.run(run_id)
        if run is None:
            self._drop(run_id)
            return None
        body = _ENCODER.encode(column(run, self._spec_of(run_id), tasks, self._clock_ms())).encode()
        self.builds += 1
        if run["state"] in _TERMINAL:
            # Keyed on what was read with the records, not on the (maybe older) header.
            self._keep(run_id, _Kept((int(run.get("version", 0)), run.get("endedMs")), tasks, body))
        else:
            self._drop(run_id)
        return body

    def on_effects(self, fx: Effects) -> None:
        """Forget deleted runs at once (a changed run is caught by its version)."""
        for run_id in fx.runs_deleted:
            self._drop(run_id)

    def __len__(self) -> int:
        return len(self._kept)

    def _keep(self, run_id: str, kept: _Kept) -> None:
        self._drop(run_id)
        self._kept[run_id] = kept
        self._bytes += len(kept.body)
        while self._bytes > self._max_bytes and len(self._kept) > 1:
            self._drop(next(iter(self._kept)))

    def _drop(self, run_id: str) -> None:
        kept = self._kept.pop(run_id, None)
        if kept is not None:
            self._bytes -= len(kept.body)
