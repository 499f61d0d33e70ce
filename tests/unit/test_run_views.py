"""Reading a run cheaply: the changed-since selection (``kiok.core.run_delta``) and the
encoded view cache (``kiok.master.run_cache``) over the real ``apply()``.

The state machine drives runs through real commands (create, assign, release, reports of
every kind, cancel, re-run, delete) while the clock moves and the coordinator's reason a
run waits changes, and readers poll with ``since`` at random moments. After every step:
the cache's whole view equals the view built from the store without any cache, and every
reader's view, patched with what ``since`` returned, equals it too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kiok.core.run_delta import Delta, RunVersions, Whole, changed_since, downstreams
from kiok.core.states import TaskRecord, TaskState
from kiok.dag.load import compiled_spec
from kiok.dag.spec import DagSpec
from kiok.errors import NotFound
from kiok.ids import TaskId
from kiok.master.run_cache import RunViews
from kiok.master.views import run_fields, run_view, task_fields, task_json
from kiok.security.kms import Keyring
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import apply_batch
from kiok.store.effects import Effects
from kiok.store.encrypted import EncryptedKV
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader

SPEC = {
    "dag": {"id": "d", "max_active_runs": 100},
    "tasks": [
        {"id": "a", "script": "x"},
        {"id": "b", "script": "x", "requires": ["a"]},
        {"id": "c", "script": "x"},
        {"id": "d", "script": "x", "requires": ["b", "c"]},
        {"id": "e", "script": "x"},
    ],
}
TASKS = ("a", "b", "c", "d", "e")


def spec() -> DagSpec:
    return compiled_spec(SPEC)


def versions(**kw: Any) -> RunVersions:
    base: dict[str, Any] = {"version": 10, "base": 2, "pending": False, "changed_at": {}, "retrying": ()}
    return RunVersions(**(base | kw))


# --- the pure selection -------------------------------------------------------------------


def ids(*names: str) -> tuple[TaskId, ...]:
    return tuple(TaskId(n) for n in names)


def test_changed_tasks_and_their_direct_downstreams_are_selected() -> None:
    at = {TaskId("a"): 9, TaskId("c"): 4, TaskId("e"): 3}
    assert changed_since(spec(), versions(changed_at=at), 5) == Delta(Whole.NO, ids("a", "b"))
    assert changed_since(spec(), versions(changed_at=at), 3) == Delta(Whole.NO, ids("a", "b", "c", "d"))


def test_nothing_changed_selects_only_retrying_tasks() -> None:
    at = {TaskId("a"): 9}
    assert changed_since(spec(), versions(changed_at=at), 10) == Delta(Whole.NO, ())
    assert changed_since(spec(), versions(changed_at=at, retrying=["e"]), 10) == Delta(Whole.NO, ids("e"))


@pytest.mark.parametrize(
    ("since", "kw", "why"),
    [
        (11, {}, Whole.UNKNOWN),  # later than the run's version
        (0, {}, Whole.UNKNOWN),
        (1, {}, Whole.TOO_OLD),  # before the run's last change of state or driver
        (5, {"pending": True}, Whole.PENDING),
    ],
)
def test_whole_run_when_since_cannot_be_brought_up(since: int, kw: dict[str, Any], why: Whole) -> None:
    delta = changed_since(spec(), versions(**kw), since)
    assert delta.full and delta.whole is why and delta.tasks == ()


def test_downstreams_are_direct_only() -> None:
    assert downstreams(spec()) == {"a": ("b",), "b": ("d",), "c": ("d",), "d": (), "e": ()}


# --- the cache over the real apply() --------------------------------------------------------


def record(state: TaskState, attempt: int, now: int) -> dict[str, Any]:
    running = state is TaskState.RUNNING
    return TaskRecord(
        state=state,
        attempt=attempt,
        worker="w",
        started_at_ms=now - 5,
        ended_at_ms=None if running or state is TaskState.RETRYING else now,
        retry_at_ms=now + 20 if state is TaskState.RETRYING else None,
        error="boom" if state in (TaskState.FAILED, TaskState.RETRYING) else None,
    ).to_dict()


def merged(view: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """What a polling client does with a ``since`` answer (which leaves out the run's args:
    they never change)."""
    if delta["full"]:
        return delta
    fields = {k: v for k, v in delta.items() if k not in ("tasks", "since")}
    return {**view, **fields, "full": True, "tasks": {**view["tasks"], **delta["tasks"]}}


class RunViewMachine(RuleBasedStateMachine):
    def __init__(self, max_bytes: int = 1 << 20) -> None:
        super().__init__()
        # Encrypted, as a master's store is: the cache compares records as stored (sealed)
        # and decrypts only those that changed.
        self.kv = EncryptedKV(MemoryKV(keys.SPACES), keys.ENCRYPTION_KEYS)
        self.kv.set_keyring(Keyring.generate())
        self.reader = StateReader(self.kv)
        self.now = 100
        self.waiting: dict[str, str] = {}
        self.views = RunViews(
            self.reader,
            lambda run_id: compiled_spec(self.reader.run_spec(run_id)),
            self.waiting.get,
            lambda: self.now,
            max_bytes=max_bytes,
        )
        self.runs: list[str] = []
        #: Two readers (run id -> the view they hold): one polls now and then, one after
        #: every step.
        self.held: dict[str, dict[str, Any]] = {}
        self.follower: dict[str, dict[str, Any]] = {}
        #: Effects not told yet (a listener hears of a batch after its write; on a replicated
        #: master a read may come between): ``effects_late`` holds them back, then tells them.
        self.late: list[Effects] | None = None
        self.apply([c.RegisterDag(at_ms=1, spec=SPEC)])
        self.create()  # a run to work on from the first step
        self.assign(0, "w")

    def apply(self, cmds: list[c.Command]) -> None:
        applied = apply_batch(self.kv, cmds)
        self.kv.write(applied.writes, sync=False)
        if self.late is None:
            self.views.on_effects(applied.effects)
        else:
            self.late.append(applied.effects)

    @rule(hold=st.booleans())
    def effects_late(self, hold: bool) -> None:
        if hold:
            self.late = [] if self.late is None else self.late
        else:
            for fx in self.late or ():
                self.views.on_effects(fx)
            self.late = None

    def header(self, i: int) -> dict[str, Any] | None:
        return self.reader.run_header(self.runs[i % len(self.runs)])

    def truth(self, run_id: str) -> dict[str, Any]:
        run = self.reader.run(run_id)
        assert run is not None
        spec_ = compiled_spec(self.reader.run_spec(run_id))
        return run_view(run, spec_, self.waiting.get(run_id), self.now)

    @rule()
    def create(self) -> None:
        self.now += 3
        self.apply([c.CreateRun(at_ms=self.now, dag_id="d")])
        self.runs.append(f"d-{self.now}-{len(self.runs) + 1}")
        assert self.reader.run_header(self.runs[-1]) is not None

    @rule(i=st.integers(0, 2), worker=st.sampled_from(["w", "x"]))
    def assign(self, i: int, worker: str) -> None:
        h = self.header(i)
        if h is not None:
            self.apply([c.AssignRun(at_ms=self.now, run_id=h["runId"], worker=worker, term=1)])

    @rule(i=st.integers(0, 2))
    def release(self, i: int) -> None:
        h = self.header(i)
        if h is not None and h["worker"]:
            self.apply(
                [c.ReleaseRun(at_ms=self.now, run_id=h["runId"], epoch=h["epoch"], worker=h["worker"])]
            )

    @rule(
        i=st.integers(0, 2),
        tasks=st.lists(st.sampled_from(TASKS), min_size=1, max_size=3, unique=True),
        state=st.sampled_from(
            [TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCESS, TaskState.FAILED, TaskState.RETRYING]
        ),
        attempt=st.integers(1, 3),
        stale=st.sampled_from([False, False, False, True]),
    )
    def report(self, i: int, tasks: list[str], state: TaskState, attempt: int, stale: bool) -> None:
        h = self.header(i)
        if h is not None:
            self.now += 1
            self.apply(
                [
                    c.ReportTasks(
                        at_ms=self.now,
                        run_id=h["runId"],
                        term=h["term"],
                        epoch=h["epoch"] - int(stale),  # a stale fence: only the header changes
                        tasks={t: record(state, attempt, self.now) for t in tasks},
                        worker=h["worker"] or "",
                    )
                ]
            )

    @rule(i=st.integers(0, 2))
    def cancel(self, i: int) -> None:
        h = self.header(i)
        if h is not None:
            self.apply([c.CancelRun(at_ms=self.now, run_id=h["runId"])])

    @rule(i=st.integers(0, 2), only_failed=st.booleans())
    def rerun(self, i: int, only_failed: bool) -> None:
        h = self.header(i)
        if h is not None:
            self.apply([c.RerunRun(at_ms=self.now, run_id=h["runId"], only_failed=only_failed)])

    @rule(i=st.integers(0, 2))
    def delete(self, i: int) -> None:
        h = self.header(i)
        if h is not None:
            self.apply([c.DeleteRuns(at_ms=self.now, run_ids=(h["runId"],))])

    @rule(ms=st.integers(1, 30))
    def clock(self, ms: int) -> None:
        self.now += ms  # retries turn due

    @rule(i=st.integers(0, 2), why=st.sampled_from(["", "no worker has label gpu", "max active runs"]))
    def coordinator_says(self, i: int, why: str) -> None:
        run_id = self.runs[i % len(self.runs)]
        if why:
            self.waiting[run_id] = why
        else:
            self.waiting.pop(run_id, None)

    @rule(i=st.integers(0, 2), fresh=st.booleans())
    def poll(self, i: int, fresh: bool) -> None:
        run_id = self.runs[i % len(self.runs)]
        held = self.held.get(run_id)
        try:
            if held is None or fresh:
                self.held[run_id] = json.loads(self.views.read(run_id))
            else:
                self.held[run_id] = merged(held, json.loads(self.views.read(run_id, held["version"])))
        except NotFound:
            self.held.pop(run_id, None)

    @invariant()
    def every_view_is_the_truth(self) -> None:
        for run_id in self.runs:
            if self.reader.run_header(run_id) is None:
                with pytest.raises(NotFound):
                    self.views.read(run_id)
                continue
            truth = self.truth(run_id)
            for readers in (self.held, self.follower):
                held = readers.get(run_id)
                if held is not None:
                    caught_up = merged(held, json.loads(self.views.read(run_id, held["version"])))
                    assert caught_up == truth
            self.follower[run_id] = truth  # this reader looks after every step
            assert json.loads(self.views.read(run_id)) == truth


TestRunViewMachine = RunViewMachine.TestCase
TestRunViewMachine.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
)


def test_a_read_after_a_change_sees_it_and_since_returns_only_it() -> None:
    m = RunViewMachine()
    run_id = m.runs[0]
    first = json.loads(m.views.read(run_id))
    assert first["full"] and set(first["tasks"]) == set(TASKS)
    m.report(0, ["e"], TaskState.SUCCESS, 1, False)
    again = json.loads(m.views.read(run_id))  # the cached view is not served: it changed
    assert again["tasks"]["e"]["state"] == "SUCCESS" and again["version"] > first["version"]
    delta = json.loads(m.views.read(run_id, first["version"]))
    assert delta["full"] is False and list(delta["tasks"]) == ["e"] and delta["since"] == first["version"]
    same = json.loads(m.views.read(run_id, again["version"]))
    assert same["full"] is False and same["tasks"] == {}
    assert json.loads(m.views.read(run_id, again["version"] + 1))["full"] is True  # unknown


class SmallCacheMachine(RunViewMachine):
    """The same with room for about one run: entries are evicted and rebuilt all along."""

    def __init__(self) -> None:
        super().__init__(max_bytes=3000)


TestSmallCacheMachine = SmallCacheMachine.TestCase
TestSmallCacheMachine.settings = settings(
    max_examples=30, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
)


def caught_up(m: RunViewMachine, held: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(m.views.read(m.runs[0], held["version"]))
    assert merged(held, answer) == m.truth(m.runs[0])
    return answer


def test_an_upstream_change_resends_its_downstream() -> None:
    m = RunViewMachine()
    held = json.loads(m.views.read(m.runs[0]))
    m.report(0, ["a"], TaskState.SUCCESS, 1, False)  # b is now ready: shown QUEUED
    assert list(caught_up(m, held)["tasks"]) == ["a", "b"]


def test_a_retry_turning_due_is_resent_without_a_new_version() -> None:
    m = RunViewMachine()
    m.report(0, ["e"], TaskState.RETRYING, 1, False)
    held = json.loads(m.views.read(m.runs[0]))
    m.clock(30)
    answer = caught_up(m, held)
    assert answer["version"] == held["version"] and answer["tasks"]["e"]["waiting"].endswith("(due)")


def test_losing_the_driver_between_reads_sends_the_whole_run() -> None:
    m = RunViewMachine()
    m.report(0, ["a"], TaskState.SUCCESS, 1, False)
    held = json.loads(m.views.read(m.runs[0]))
    assert held["tasks"]["b"]["state"] == "QUEUED"  # shown queued while a driver holds the run
    m.release(0)
    assert caught_up(m, held)["full"] is True


def test_the_cache_stays_within_its_bytes_and_forgets_deleted_runs() -> None:
    m = RunViewMachine(max_bytes=6000)
    for _ in range(12):
        m.create()
    for run_id in m.runs:
        json.loads(m.views.read(run_id))
    assert 1 <= len(m.views) < 12 and m.views._bytes <= 6000
    m.cancel(0)
    assert json.loads(m.views.read(m.runs[0]))["state"] == "CANCELLED"
    assert m.runs[0] in m.views._entries
    m.delete(0)  # the command log's effects drop it
    assert m.runs[0] not in m.views._entries
    with pytest.raises(NotFound):
        m.views.read(m.runs[0])


def test_a_run_whose_writes_came_through_effects_is_read_without_scanning_its_records() -> None:
    m = RunViewMachine()
    scans: list[str] = []
    real = m.reader.task_records_sealed

    def counted(run_id: str) -> Iterator[tuple[str, bytes]]:
        scans.append(run_id)
        return real(run_id)

    m.reader.task_records_sealed = counted  # type: ignore[method-assign]
    held = json.loads(m.views.read(m.runs[0]))
    assert scans == [m.runs[0]]  # built once from the store
    m.report(0, ["a", "e"], TaskState.RUNNING, 1, False)
    m.report(0, ["a"], TaskState.SUCCESS, 1, False)
    assert list(caught_up(m, held)["tasks"]) == ["a", "b", "e"]
    assert scans == [m.runs[0]]  # the records written came with the command log's effects
    m.effects_late(True)
    m.report(0, ["e"], TaskState.SUCCESS, 1, False)
    assert caught_up(m, held)["tasks"]["e"]["state"] == "SUCCESS"
    assert len(scans) == 2  # effects not told yet: the records are read
    m.effects_late(False)  # told now: behind what the scan read, they change nothing
    m.report(0, ["c"], TaskState.RUNNING, 1, False)
    assert caught_up(m, held)["tasks"]["c"]["state"] == "RUNNING"
    assert len(scans) == 2  # the versions told follow on from those the scan read


@given(
    rec=st.builds(
        TaskRecord,
        state=st.sampled_from(TaskState),
        attempt=st.integers(0, 10**6),
        started_at_ms=st.none() | st.integers(0, 2**42),
        ended_at_ms=st.none() | st.integers(0, 2**42),
        exit_code=st.none() | st.integers(-(2**31), 2**31),
        error=st.none() | st.text(),
        worker=st.none() | st.text(),
        retry_at_ms=st.none() | st.integers(0, 2**42),
    ),
    waiting=st.none() | st.text(),
)
def test_a_task_view_is_encoded_as_json_encodes_it(rec: TaskRecord, waiting: str | None) -> None:
    assert task_json(rec, waiting) == json.dumps(task_fields(rec, waiting), separators=(",", ":")).encode()


def _strict_json(data: bytes | str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    return json.loads(data, parse_constant=refuse)


def test_args_stored_as_infinity_read_as_json() -> None:
    """A number arg sent as ``"1e999"`` was once stored as infinity (it is refused now): the
    run's view and its summary are still JSON, the values shown as the text the task got."""
    m = RunViewMachine()
    real = m.reader.run_header

    def stored_before(run_id: str) -> dict[str, Any] | None:
        header = real(run_id)
        if header is not None:
            header["args"] = {"x": float("inf"), "y": [float("-inf"), {"z": float("nan")}], "n": 1.5}
        return header

    m.reader.run_header = stored_before  # type: ignore[method-assign]
    shown = {"x": "Infinity", "y": ["-Infinity", {"z": "NaN"}], "n": 1.5}
    assert _strict_json(m.views.read(m.runs[0]))["args"] == shown
    header = stored_before(m.runs[0])
    assert header is not None
    assert _strict_json(json.dumps(run_fields(header, None), allow_nan=False))["args"] == shown
