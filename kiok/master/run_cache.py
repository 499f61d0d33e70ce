"""Run views kept encoded, so that reading a run (``GET /api/v1/runs/{id}``) costs about a
header read, and reading what changed since a version (``?since=``) costs about what
changed.

One entry per run holds, for the run's version it was built at, each task's record (the
stored bytes, and decoded) and its view encoded as a JSON fragment. A read first reads the
run header (one key): when the version, the coordinator's reason the run waits and the
clock (a retry turning due) all still match, the entry answers; otherwise it is brought up
to date by scanning the run's task records, decoding only those whose bytes changed, and
re-encoding only the views ``kiok.core.run_delta`` says may have changed. So a view is
never older than the header read just before it, whatever the effects' timing.

The command log's effects drop a deleted run's entry (``runs_deleted``) and a changed
run's assembled body (``runs_changed``). The cache is bounded by the bytes it holds, the
least recently read run going first.
"""

from __future__ import annotations

import json
from bisect import bisect_right, insort
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kiok.core.run_delta import Delta, RunVersions, changed_since, downstreams
from kiok.core.states import RunState, TaskRecord, TaskState
from kiok.core.waiting import presented_one
from kiok.dag.spec import DagSpec
from kiok.errors import NotFound
from kiok.ids import TaskId
from kiok.master.views import run_fields, task_view
from kiok.store.effects import Effects
from kiok.store.reader import StateReader
from kiok.store.txn import decode

#: Bytes of encoded views kept over all runs (a 500-task run takes about 150 KB).
MAX_BYTES = 64 * 1024 * 1024


_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _json(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


@dataclass
class _Entry:
    spec: DagSpec
    down: dict[TaskId, tuple[TaskId, ...]]
    known: frozenset[str]
    version: int = -1
    base: int = 0
    state: str = ""
    driven: bool = False
    waiting: str | None = None
    #: The clock time a RETRYING task's reason turns "(due)": the views are stale from then.
    expires_ms: int | None = None
    raw: dict[str, bytes] = field(default_factory=dict)
    records: dict[TaskId, TaskRecord] = field(default_factory=dict)
    changed_at: dict[TaskId, int] = field(default_factory=dict)
    #: (version, task) of every record change seen, by version: a ``since`` read looks only
    #: at the tail after its version (compacted when it outgrows the run).
    changes: list[tuple[int, TaskId]] = field(default_factory=list)
    retrying: set[TaskId] = field(default_factory=set)
    #: Each task's record as the API shows it (``presented_one``), kept across versions.
    shown: dict[TaskId, TaskRecord] = field(default_factory=dict)
    #: ``"<task id>":{view}`` per task, in no particular order, and their total size.
    fragments: dict[TaskId, bytes] = field(default_factory=dict)
    fragment_bytes: int = 0
    #: The run's own fields with ``version``, encoded, without the closing brace.
    head: bytes = b"{"
    #: The whole view, assembled on the first full read of this version.
    body: bytes | None = None

    def size(self) -> int:
        return self.fragment_bytes * 2 + len(self.body or b"")

    def record(self, tid: TaskId, rec: TaskRecord, at: int) -> None:
        self.records[tid] = rec
        self.changed_at[tid] = at
        insort(self.changes, (at, tid))
        if rec.state is TaskState.RETRYING:
            self.retrying.add(tid)
        else:
            self.retrying.discard(tid)

    def compact(self) -> None:
        if len(self.changes) > 2 * len(self.known) + 64:
            self.changes = sorted((at, tid) for tid, at in self.changed_at.items())

    def versions(self, since: int) -> RunVersions:
        """What ``changed_since`` needs for ``since``: only the records changed after it."""
        tail = self.changes[bisect_right(self.changes, since, key=_version) :]
        return RunVersions(
            version=self.version,
            base=self.base,
            pending=self.state == RunState.PENDING.value,
            changed_at={tid: self.changed_at[tid] for _, tid in tail},
            retrying=self.retrying,
        )

    def put_fragment(self, tid: TaskId, fragment: bytes) -> None:
        self.fragment_bytes += len(fragment) - len(self.fragments.get(tid, b""))
        self.fragments[tid] = fragment


def _version(change: tuple[int, TaskId]) -> int:
    return change[0]


class RunViews:
    """The cache of encoded run views; ``read`` is all the API calls."""

    def __init__(
        self,
        reader: StateReader,
        spec_of: Callable[[str], DagSpec],
        waiting_of: Callable[[str], str | None],
        clock_ms: Callable[[], int],
        *,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._reader = reader
        self._spec_of = spec_of
        self._waiting_of = waiting_of
        self._clock_ms = clock_ms
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._bytes = 0
        #: Reads answered without re-encoding any task, and reads that re-encoded some.
        self.hits = 0
        self.refreshes = 0

    def read(self, run_id: str, since: int | None = None) -> bytes:
        """The run view as JSON: the whole run (``"full": true``) without ``since``, or when
        ``since`` is not a version the run can be brought up from; else the run's fields
        and only the tasks whose view may have changed after ``since`` (``"full": false``).
        ``NotFound`` for an unknown run."""
        header = self._reader.run_header(run_id)
        if header is None:
            raise NotFound(f"run {run_id!r} not found")
        entry = self._current(run_id, header)
        if since is None:
            return self._whole(run_id, entry)
        delta = changed_since(entry.spec, entry.versions(since), since, entry.down)
        if delta.full:
            return self._whole(run_id, entry)
        return self._delta(entry, since, delta)

    def on_effects(self, fx: Effects) -> None:
        """Forget deleted runs, and the assembled body of changed ones (their next read
        brings them up to date from the records either way)."""
        for run_id in fx.runs_deleted:
            self._drop(run_id)
        for run_id in fx.runs_changed:
            entry = self._entries.get(run_id)
            if entry is not None:
                entry.body = None

    def clear(self) -> None:
        """Forget every run (the store was replaced: versions may have gone back)."""
        self._entries.clear()
        self._sizes.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    # --- internals -------------------------------------------------------------------------

    def _current(self, run_id: str, header: dict[str, Any]) -> _Entry:
        entry = self._entries.get(run_id)
        now = self._clock_ms()
        waiting = self._waiting_of(run_id)
        if (
            entry is not None
            and entry.version == int(header.get("version", 0))
            and entry.waiting == waiting
            and (entry.expires_ms is None or now < entry.expires_ms)
        ):
            self._entries.move_to_end(run_id)
            self.hits += 1
            return entry
        if entry is None:
            spec = self._spec_of(run_id)
            entry = _Entry(spec=spec, down=downstreams(spec), known=frozenset(spec.task_ids))
        self._refresh(entry, header, waiting, now)
        self._keep(run_id, entry)
        self.refreshes += 1
        return entry

    def _refresh(self, entry: _Entry, header: dict[str, Any], waiting: str | None, now: int) -> None:
        """Bring ``entry`` to ``header``'s version: re-read the records (decoding the changed
        ones) and re-encode the views that may differ."""
        previous = entry.version
        state, driven = header["state"], header["state"] == RunState.RUNNING.value and header["worker"]
        known, seen = entry.known, entry.raw
        for tid, raw in self._reader.task_records_raw(header["runId"]):
            if seen.get(tid) != raw and tid in known:
                record = decode(raw)
                seen[tid] = raw
                entry.record(TaskId(tid), TaskRecord.from_dict(record), int(record.get("v", 0)))
        entry.compact()
        run_wide = (state, bool(driven), waiting) != (entry.state, entry.driven, entry.waiting)
        entry.version = int(header.get("version", 0))
        entry.base = int(header.get("viewBase", 0))
        entry.state, entry.driven, entry.waiting = state, bool(driven), waiting
        if previous < 0 or run_wide:
            redo: tuple[TaskId, ...] = entry.spec.task_ids
        else:
            delta = changed_since(entry.spec, entry.versions(previous), previous, entry.down)
            redo = entry.spec.task_ids if delta.full else delta.tasks
        shown, records, spec = entry.shown, entry.records, entry.spec
        for tid in redo:  # a task is shown from its record and its upstreams': both in ``redo``
            shown[tid] = presented_one(spec, records, tid, driven=entry.driven)
        for tid in redo:
            view = task_view(spec, shown, tid, state, waiting, now)
            entry.put_fragment(tid, _json({tid: view})[1:-1])
        fields = {**run_fields(header, waiting), "version": entry.version}
        entry.head = _json(fields)[:-1]
        entry.body = None
        due = [
            at for at in (entry.records[t].retry_at_ms for t in entry.retrying) if at is not None and at > now
        ]
        entry.expires_ms = min(due) if due else None

    def _whole(self, run_id: str, entry: _Entry) -> bytes:
        if entry.body is None:
            tasks = b",".join(entry.fragments[t] for t in entry.spec.task_ids)
            entry.body = entry.head + b',"full":true,"tasks":{' + tasks + b"}}"
            self._keep(run_id, entry)
        return entry.body

    def _delta(self, entry: _Entry, since: int, delta: Delta) -> bytes:
        tasks = b",".join(entry.fragments[t] for t in delta.tasks)
        return entry.head + b',"since":' + str(since).encode() + b',"full":false,"tasks":{' + tasks + b"}}"

    def _keep(self, run_id: str, entry: _Entry) -> None:
        self._drop(run_id)
        size = entry.size()
        self._entries[run_id] = entry
        self._sizes[run_id] = size
        self._bytes += size
        while self._bytes > self._max_bytes and len(self._entries) > 1:
            self._drop(next(iter(self._entries)))

    def _drop(self, run_id: str) -> None:
        if self._entries.pop(run_id, None) is not None:
            self._bytes -= self._sizes.pop(run_id)
