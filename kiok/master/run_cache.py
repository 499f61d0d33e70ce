"""Run views kept encoded, so that reading a run (``GET /api/v1/runs/{id}``) costs about a
header read, and reading what changed since a version (``?since=``) costs about what
changed.

One entry per run holds, for the run's version it was built at, each task's record and its
view encoded as a JSON fragment. A read first reads the run header (one key): when the
version, the coordinator's reason the run waits and the clock (a retry turning due) all
still match, the entry answers; otherwise it is brought up to date and only the views
``kiok.core.run_delta`` says may have changed are worked out again (after a change of the
run's state or driver, those and every task not yet ended), and encoded again only when
they come out different.

The records come from the command log's effects: every record ``apply()`` writes, with
its version (``Effects.task_writes``), and the versions each batch gave each run
(``Effects.run_versions``). When those follow on without a gap from what the entry holds,
up to the header's version, the read reads no record; otherwise (an entry being built,
effects not told yet, a gap) it scans the run's records, decrypting and decoding only
those whose stored bytes changed. So a view is never older than the header read just
before it, whatever the effects' timing. Effects also drop a deleted run's entry
(``runs_deleted``) and a changed run's assembled body (``runs_changed``). The cache is
bounded by the bytes it holds, the least recently read run going first.

A caller without ``logs:Read`` reads a second variant of the view, where a task's ``error``
quotes nothing of its output (``kiok.master.views.own_error``): an entry keeps the encoded
views that differ for it (only tasks whose error quotes output) and its own assembled
body, so neither variant is encoded per request.
"""

from __future__ import annotations

import dataclasses
import json
import weakref
from bisect import bisect_right, insort
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kiok.core.run_delta import Delta, RunVersions, changed_since, dag_order, downstreams
from kiok.core.states import RunState, TaskRecord, TaskState
from kiok.core.waiting import presented_with_reason
from kiok.dag.spec import DagSpec, TriggerRule
from kiok.errors import NotFound
from kiok.ids import TaskId
from kiok.master.views import quotes_output, run_fields, task_json
from kiok.store.effects import Effects
from kiok.store.reader import StateReader
from kiok.store.txn import decode

#: Bytes of encoded views kept over all runs (a 500-task run takes about 150 KB).
MAX_BYTES = 64 * 1024 * 1024


#: Encoded views of tasks not yet started kept over all runs (most share a few).
_SHARED_VIEWS = 4096

#: JSON proper: a NaN or infinity fails here rather than reach a client as ``Infinity``,
#: which no JSON parser reads (``run_fields`` shows those of old runs' args as text).
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _json(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


@dataclass(frozen=True)
class _Shape:
    """What the views of a DAG's runs need of its spec, worked out once per spec (the runs of
    a DAG version share one compiled spec): a run's first read need not redo it."""

    down: dict[TaskId, tuple[TaskId, ...]]
    known: frozenset[str]
    #: ``"<task id>":`` per task, encoded.
    names: dict[TaskId, bytes]
    order: dict[TaskId, int]
    #: Tasks with the same upstreams and trigger rule share a number: not yet started, they
    #: show alike (the 500 tasks of a fan-out), so one is worked out for all.
    kin: dict[TaskId, int]
    task_ids: tuple[TaskId, ...]


@dataclass
class _Entry:
    spec: DagSpec
    shape: _Shape
    version: int = -1
    #: Every record written at a version up to this one is in ``records`` (read by a scan,
    #: or told by the command log's effects); a read of a later header scans the records.
    seen_version: int = -1
    base: int = 0
    state: str = ""
    driven: bool = False
    waiting: str | None = None
    #: The clock time a RETRYING task's reason turns "(due)": the views are stale from then.
    expires_ms: int | None = None
    #: Each task's record as stored (encrypted), and decrypted: only new stored bytes are opened.
    sealed: dict[str, bytes] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)
    records: dict[TaskId, TaskRecord] = field(default_factory=dict)
    changed_at: dict[TaskId, int] = field(default_factory=dict)
    #: (version, task) of every record change seen, by version: a ``since`` read looks only
    #: at the tail after its version (compacted when it outgrows the run).
    changes: list[tuple[int, TaskId]] = field(default_factory=list)
    retrying: set[TaskId] = field(default_factory=set)
    #: Each task's view as last encoded (presented record, wait reason): one that comes out
    #: the same is not encoded again (a run's change of state or driver redoes every task).
    shown: dict[TaskId, tuple[TaskRecord, str | None]] = field(default_factory=dict)
    #: ``"<task id>":{view}`` per task, in no particular order, and their total size.
    fragments: dict[TaskId, bytes] = field(default_factory=dict)
    #: ``"<task id>":{view}`` for a caller without ``logs:Read``, of the tasks whose view
    #: differs for one (an error quoting the task's output); in ``fragment_bytes`` too.
    plain: dict[TaskId, bytes] = field(default_factory=dict)
    fragment_bytes: int = 0
    #: The run's own fields with ``version``, encoded, without the closing brace.
    head: bytes = b"{"
    #: The same without ``args``, which never change once the run is made: what a ``since``
    #: read answers (256 KiB of args had made every poll of a run 786 KB).
    delta_head: bytes = b"{"
    #: The whole view, assembled on the first full read of this version.
    body: bytes | None = None
    #: The same for a caller without ``logs:Read``, when ``plain`` holds any task.
    plain_body: bytes | None = None

    def size(self) -> int:
        return self.fragment_bytes * 2 + len(self.body or b"") + len(self.plain_body or b"")

    def forget_bodies(self) -> None:
        self.body = self.plain_body = None

    def record(self, tid: TaskId, rec: TaskRecord, at: int) -> None:
        if at < self.changed_at.get(tid, -1):
            return  # older than what is held: effects and a scan may tell the same write
        self.records[tid] = rec
        self.changed_at[tid] = at
        insort(self.changes, (at, tid))
        if rec.state is TaskState.RETRYING:
            self.retrying.add(tid)
        else:
            self.retrying.discard(tid)

    def compact(self) -> None:
        if len(self.changes) > 2 * len(self.shape.known) + 64:
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

    def put_fragment(self, tid: TaskId, fragment: bytes, plain: bytes | None) -> None:
        """``plain``: the fragment for a caller without ``logs:Read`` where it differs."""
        self.fragment_bytes += len(fragment) - len(self.fragments.get(tid, b""))
        self.fragments[tid] = fragment
        if plain is not None:
            self.fragment_bytes += len(plain) - len(self.plain.get(tid, b""))
            self.plain[tid] = plain
        elif tid in self.plain:
            self.fragment_bytes -= len(self.plain.pop(tid))

    def fragment(self, tid: TaskId, output: bool) -> bytes:
        """The task's encoded view for a caller who may (``output``) or may not read its output."""
        return self.fragments[tid] if output else self.plain.get(tid) or self.fragments[tid]


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
        #: Each spec's ``_Shape``, by ``id(spec)`` while it lives.
        self._shapes: dict[int, tuple[weakref.ref[DagSpec], _Shape]] = {}
        #: Encoded views of tasks not yet started, by (presented record, wait reason).
        self._shared: dict[tuple[TaskRecord, str | None], bytes] = {}
        #: Reads answered without re-encoding any task, and reads that re-encoded some.
        self.hits = 0
        self.refreshes = 0

    def read(self, run_id: str, since: int | None = None, *, output: bool = True) -> bytes:
        """The run view as JSON: the whole run (``"full": true``) without ``since``, or when
        ``since`` is not a version the run can be brought up from; else the run's fields
        and only the tasks whose view may have changed after ``since`` (``"full": false``).
        ``output``: whether the caller may read the tasks' output (``logs:Read``); without,
        no task's ``error`` quotes it. ``NotFound`` for an unknown run."""
        header = self._reader.run_header(run_id)
        if header is None:
            raise NotFound(f"run {run_id!r} not found")
        entry = self._current(run_id, header)
        if since is None:
            return self._whole(run_id, entry, output)
        delta = changed_since(entry.spec, entry.versions(since), since, entry.shape.down, entry.shape.order)
        if delta.full:
            return self._whole(run_id, entry, output)
        return self._delta(entry, since, delta, output)

    def on_effects(self, fx: Effects) -> None:
        """Forget deleted runs; take the task records written to the runs held (their views
        are re-encoded on the next read), and when the versions the batch gave a run follow
        on from those held without a gap, the next read of it need not scan its records."""
        for run_id in fx.runs_deleted:
            self._drop(run_id)
        entries = self._entries
        for run_id, tid, version, rec in fx.task_writes:
            entry = entries.get(run_id)
            if entry is not None and tid in entry.shape.known:
                entry.record(TaskId(tid), rec, version)
                entry.sealed.pop(tid, None)  # a scan opens it again
                entry.raw.pop(tid, None)
        for run_id, (before, after) in fx.run_versions.items():
            entry = entries.get(run_id)
            # Versions up to ``before`` known (a scan read them, or effects told them), and
            # the rest up to ``after`` told now: none is missing.
            if entry is not None and 0 <= before <= entry.seen_version < after:
                entry.seen_version = after
        for run_id in fx.runs_changed:
            entry = entries.get(run_id)
            if entry is not None:
                entry.forget_bodies()

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
            shape = self._shape(spec)
            entry = _Entry(spec=spec, shape=shape)
        self._refresh(entry, header, waiting, now)
        self._keep(run_id, entry)
        self.refreshes += 1
        return entry

    def _refresh(self, entry: _Entry, header: dict[str, Any], waiting: str | None, now: int) -> None:
        """Bring ``entry`` to ``header``'s version: re-read the records (decoding the changed
        ones) and re-encode the views that may differ."""
        previous = entry.version
        state, driven = header["state"], header["state"] == RunState.RUNNING.value and header["worker"]
        version = int(header.get("version", 0))
        if entry.seen_version < version:  # some writes were not told by effects: read them
            self._scan(entry, header["runId"])
            entry.seen_version = version
        entry.compact()
        run_wide = (state, bool(driven), waiting) != (entry.state, entry.driven, entry.waiting)
        entry.version = version
        entry.base = int(header.get("viewBase", 0))
        entry.state, entry.driven, entry.waiting = state, bool(driven), waiting
        if previous < 0:
            redo: tuple[TaskId, ...] = entry.shape.task_ids
        elif run_wide:
            # The run's state, driver and wait reason show only in the views of tasks not yet
            # ended: an ended task's view is its own record (a run's end redoes no view).
            versions = dataclasses.replace(entry.versions(previous), base=0, pending=False)
            changed = set(
                changed_since(entry.spec, versions, previous, entry.shape.down, entry.shape.order).tasks
            )
            ended = {t for t, rec in entry.records.items() if rec.is_terminal}
            redo = tuple(t for t in entry.shape.task_ids if t in changed or t not in ended)
        else:
            delta = changed_since(
                entry.spec, entry.versions(previous), previous, entry.shape.down, entry.shape.order
            )
            redo = entry.shape.task_ids if delta.full else delta.tasks
        # A pending run's tasks that wait show why the run waits (the coordinator's reason).
        self._encode_views(entry, redo, waiting if state == RunState.PENDING.value else None, now)
        fields = {**run_fields(header, waiting), "version": entry.version}
        args = fields.pop("args")
        entry.delta_head = _json(fields)[:-1]
        entry.head = entry.delta_head + b',"args":' + _json(args)
        entry.forget_bodies()
        due = [
            at for at in (entry.records[t].retry_at_ms for t in entry.retrying) if at is not None and at > now
        ]
        entry.expires_ms = min(due) if due else None

    def _encode_views(self, entry: _Entry, redo: Iterable[TaskId], run_waits: str | None, now: int) -> None:
        """Re-encode the views of ``redo`` that come out different from those held."""
        names, kin, records, spec, driven = (
            entry.shape.names,
            entry.shape.kin,
            entry.records,
            entry.spec,
            entry.driven,
        )
        shown, encoded = entry.shown, self._encoded
        alike: dict[int, tuple[TaskRecord, str | None]] = {}
        last: tuple[TaskRecord | None, str | None, bytes, bytes | None] = (None, None, b"", None)
        for tid in redo:
            if tid in records:
                rec, why = presented_with_reason(spec, records, tid, driven=driven, now_ms=now)
            else:  # not started: shown as its kin not started (same upstreams, same rule)
                got = alike.get(kin[tid])
                if got is None:
                    got = alike[kin[tid]] = presented_with_reason(
                        spec, records, tid, driven=driven, now_ms=now
                    )
                rec, why = got
            why = (run_waits or why) if why else None
            before = shown.get(tid)
            if before is None or before[0] is not rec or before[1] != why:
                shown[tid] = (rec, why)
                if rec is not last[0] or why != last[1]:  # siblings in a fan-out show alike
                    plain = task_json(rec, why, output=False) if quotes_output(rec) else None
                    last = (rec, why, encoded(rec, why), plain)
                entry.put_fragment(
                    tid, names[tid] + last[2], None if last[3] is None else names[tid] + last[3]
                )

    def _shape(self, spec: DagSpec) -> _Shape:
        key = id(spec)
        held = self._shapes.get(key)
        if held is not None and held[0]() is spec:
            return held[1]
        kinds: dict[tuple[tuple[TaskId, ...], TriggerRule], int] = {}
        shape = _Shape(
            down=downstreams(spec),
            known=frozenset(spec.task_ids),
            names={tid: _json(tid) + b":" for tid in spec.task_ids},
            order=dag_order(spec),
            kin={t.id: kinds.setdefault((t.requires, t.trigger_rule), len(kinds)) for t in spec.tasks},
            task_ids=spec.task_ids,
        )
        shapes = self._shapes  # forgotten with the spec (a run's spec outlives its entry)
        shapes[key] = (weakref.ref(spec, lambda _: shapes.pop(key, None)), shape)
        return shape

    def _scan(self, entry: _Entry, run_id: str) -> None:
        """Read the run's task records, opening and decoding only those whose stored bytes
        changed since the last scan."""
        known, seen, sealed_seen = entry.shape.known, entry.raw, entry.sealed
        for tid, sealed in self._reader.task_records_sealed(run_id):
            if sealed_seen.get(tid) == sealed or tid not in known:
                continue
            sealed_seen[tid] = sealed
            raw = self._reader.open_task_record(run_id, tid, sealed)
            if seen.get(tid) != raw:
                record = decode(raw)
                seen[tid] = raw
                entry.record(TaskId(tid), TaskRecord.from_dict(record), int(record.get("v", 0)))

    def _encoded(self, rec: TaskRecord, waiting: str | None) -> bytes:
        """A task's view encoded; those of tasks not yet started are kept (bounded), as
        many tasks share them: all 500 of a fan-out show QUEUED alike when it opens."""
        if rec.started_at_ms is not None:
            return task_json(rec, waiting)
        key = (rec, waiting)
        out = self._shared.get(key)
        if out is None:
            if len(self._shared) >= _SHARED_VIEWS:
                self._shared.clear()
            out = self._shared[key] = task_json(rec, waiting)
        return out

    def _whole(self, run_id: str, entry: _Entry, output: bool) -> bytes:
        """The whole view; without ``output``, the same bytes unless a task's error quotes
        its output (then a second body, assembled once per version too)."""
        if output or not entry.plain:
            if entry.body is None:
                tasks = b",".join(map(entry.fragments.__getitem__, entry.shape.task_ids))
                entry.body = entry.head + b',"full":true,"tasks":{' + tasks + b"}}"
                self._keep(run_id, entry)
            return entry.body
        if entry.plain_body is None:
            tasks = b",".join(entry.fragment(t, False) for t in entry.shape.task_ids)
            entry.plain_body = entry.head + b',"full":true,"tasks":{' + tasks + b"}}"
            self._keep(run_id, entry)
        return entry.plain_body

    def _delta(self, entry: _Entry, since: int, delta: Delta, output: bool) -> bytes:
        if output or not entry.plain:
            tasks = b",".join(map(entry.fragments.__getitem__, delta.tasks))
        else:
            tasks = b",".join(entry.fragment(t, False) for t in delta.tasks)
        since_part = b',"since":' + str(since).encode()
        return entry.delta_head + since_part + b',"full":false,"tasks":{' + tasks + b"}}"

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
