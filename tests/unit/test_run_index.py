"""The run indexes and run summaries (``kiok.store.run_index``) stay in step with the runs.

A Hypothesis state machine drives runs of two DAGs through the real ``apply()`` (create,
assign, task reports, cancel, re-run, delete), several commands to a batch as the command
log applies them, and checks after every step that each index holds exactly the runs its
filter selects, that every header's task counts match its task records, and that paging a
list through the indexes gives the same runs as filtering the whole history by hand. Then:
a store written without the indexes gets them from ``run_index.build``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kiok.core.states import TERMINAL_RUN_STATES, RunState, TaskRecord, TaskState
from kiok.store import commands as c
from kiok.store import keys, run_index
from kiok.store.commandlog import apply_batch
from kiok.store.kv import MemoryKV
from kiok.store.reader import RunQuery, StateReader
from kiok.store.txn import decode, encode

DAGS = ("d1", "d2")
TASKS = ("a", "b", "c")
STATES = [s.value for s in RunState]


def spec(dag_id: str) -> dict[str, Any]:
    return {
        "dag": {"id": dag_id, "max_active_runs": 100},
        "tasks": [
            {"id": "a", "script": "x"},
            {"id": "b", "script": "x", "requires": ["a"]},
            {"id": "c", "script": "x"},
        ],
    }


def record(state: TaskState, attempt: int) -> dict[str, Any]:
    ended = None if state is TaskState.RUNNING else 9
    return TaskRecord(state=state, attempt=attempt, worker="w", started_at_ms=5, ended_at_ms=ended).to_dict()


def index_keys(kv: MemoryKV, prefix: str) -> set[str]:
    return {key.decode() for key, _ in kv.scan(keys.META, prefix.encode())}


def expected_index_keys(headers: list[dict[str, Any]]) -> dict[str, set[str]]:
    return {
        "runs/": {keys.run_by_seq(h["seq"]) for h in headers},
        "dagruns/": {keys.run_by_dag(h["dagId"], h["seq"]) for h in headers},
        "staterun/": {keys.run_by_state(h["state"], h["seq"]) for h in headers},
        "dagstaterun/": {keys.run_by_dag_state(h["dagId"], h["state"], h["seq"]) for h in headers},
    }


def check_consistent(kv: MemoryKV) -> None:
    """Every index holds exactly its runs; every header counts its tasks right; every
    filtered, paged list equals the brute-force answer."""
    reader = StateReader(kv)
    headers = [decode(raw) for _, raw in kv.scan(keys.META, b"run/")]
    for prefix, entries in expected_index_keys(headers).items():
        assert index_keys(kv, prefix) == entries, prefix
    for h in headers:
        run = reader.run(h["runId"])
        assert run is not None
        assert h["taskCounts"] == dict(Counter(t["state"] for t in run["tasks"].values()))
        assert h["indexedState"] == h["state"]
    newest_first = sorted(headers, key=lambda h: -h["seq"])
    times = sorted({h["createdMs"] for h in headers})
    since = times[len(times) // 3] if times else None
    until = times[2 * len(times) // 3] if times else None
    for dag_id in (None, *DAGS):
        for state in (None, *STATES):
            for window in ((None, None), (since, None), (None, until), (since, until)):
                query = RunQuery(dag_id=dag_id, state=state, since_ms=window[0], until_ms=window[1])
                want = [
                    h["runId"]
                    for h in newest_first
                    if (dag_id is None or h["dagId"] == dag_id)
                    and (state is None or h["state"] == state)
                    and (window[0] is None or h["createdMs"] >= window[0])
                    and (window[1] is None or h["createdMs"] < window[1])
                ]
                got: list[str] = []
                cursor: int | None = None
                while True:
                    page, cursor = reader.run_page(query, limit=2, cursor=cursor)
                    got += [h["runId"] for h in page]
                    if cursor is None:
                        break
                assert got == want, (query, got, want)


class RunIndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.kv = MemoryKV(keys.SPACES)
        self.reader = StateReader(self.kv)
        self.now = 100
        self.queued: list[c.Command] = []
        self.runs: list[str] = []
        self.apply([c.RegisterDag(at_ms=1, spec=spec(d)) for d in DAGS])

    def apply(self, cmds: list[c.Command]) -> list[Any]:
        applied = apply_batch(self.kv, cmds)
        self.kv.write(applied.writes, sync=False)
        return [result for result, _ in applied.outcomes]

    def tick(self) -> int:
        self.now += 7
        return self.now

    def queue(self, cmd: c.Command) -> None:
        """Commands wait for ``flush``: a batch applies several in one transaction, where a
        command reads the header the previous one changed."""
        self.queued.append(cmd)

    def header(self, i: int) -> dict[str, Any] | None:
        return self.reader.run_header(self.runs[i % len(self.runs)])

    @rule(dag=st.sampled_from(DAGS))
    def create(self, dag: str) -> None:
        self.flush()
        result = self.apply([c.CreateRun(at_ms=self.tick(), dag_id=dag)])[0]
        self.runs.append(result["runId"])

    @precondition(lambda self: self.runs)
    @rule(i=st.integers(0, 50))
    def assign(self, i: int) -> None:
        h = self.header(i)
        if h is not None:
            self.queue(c.AssignRun(at_ms=self.tick(), run_id=h["runId"], worker="w", term=1))

    @precondition(lambda self: self.runs)
    @rule(
        i=st.integers(0, 50),
        task=st.sampled_from(TASKS),
        state=st.sampled_from([TaskState.RUNNING, TaskState.SUCCESS, TaskState.FAILED]),
        attempt=st.integers(1, 2),
    )
    def report(self, i: int, task: str, state: TaskState, attempt: int) -> None:
        h = self.header(i)
        if h is not None:
            self.queue(
                c.ReportTasks(
                    at_ms=self.tick(),
                    run_id=h["runId"],
                    term=h["term"],
                    epoch=h["epoch"],
                    tasks={task: record(state, attempt)},
                    worker="w",
                )
            )

    @precondition(lambda self: self.runs)
    @rule(i=st.integers(0, 50))
    def cancel(self, i: int) -> None:
        h = self.header(i)
        if h is not None:
            self.queue(c.CancelRun(at_ms=self.tick(), run_id=h["runId"]))

    @precondition(lambda self: self.runs)
    @rule(i=st.integers(0, 50), only_failed=st.booleans())
    def rerun(self, i: int, only_failed: bool) -> None:
        h = self.header(i)
        if h is not None:
            self.queue(c.RerunRun(at_ms=self.tick(), run_id=h["runId"], only_failed=only_failed))

    @precondition(lambda self: self.runs)
    @rule(i=st.integers(0, 50))
    def delete(self, i: int) -> None:
        h = self.header(i)
        if h is not None and h["state"] in TERMINAL_RUN_STATES:
            self.queue(c.DeleteRuns(at_ms=self.tick(), run_ids=(h["runId"],)))

    @rule()
    def flush(self) -> None:
        if self.queued:
            self.apply(self.queued)
            self.queued = []

    @invariant()
    def indexes_match_the_runs(self) -> None:
        check_consistent(self.kv)


TestRunIndexMachine = RunIndexMachine.TestCase
TestRunIndexMachine.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)


def strip_indexes(kv: MemoryKV) -> None:
    """Make ``kv`` look like a store written before the run indexes: no state index keys,
    headers without ``taskCounts``/``indexedState``, no version marker."""
    writes: list[tuple[str, bytes, bytes | None]] = []
    for prefix in ("staterun/", "dagstaterun/"):
        writes += [(keys.META, key, None) for key, _ in kv.scan(keys.META, prefix.encode())]
    for key, raw in kv.scan(keys.META, b"run/"):
        header = decode(raw)
        header.pop("taskCounts")
        header.pop("indexedState")
        writes.append((keys.META, key, encode(header)))
    writes.append((keys.KMS, keys.RUN_INDEX_VERSION.encode(), None))
    kv.write(writes, sync=False)


def test_a_store_written_without_the_indexes_gets_them_once() -> None:
    machine = RunIndexMachine()
    for i in range(9):
        machine.create(DAGS[i % 2])
    for i in range(0, 9, 2):  # some finish, some fail, some stay pending or running
        machine.assign(i)
        machine.flush()
        h = machine.header(i)
        assert h is not None
        machine.apply(
            [
                c.ReportTasks(
                    at_ms=machine.tick(),
                    run_id=h["runId"],
                    term=1,
                    epoch=h["epoch"],
                    tasks={t: record(TaskState.FAILED if i == 4 else TaskState.SUCCESS, 1) for t in TASKS},
                    worker="w",
                )
            ]
        )
    machine.assign(1)
    machine.flush()
    check_consistent(machine.kv)
    strip_indexes(machine.kv)
    reader = StateReader(machine.kv)
    assert reader.run_page(RunQuery(state="SUCCESS"))[0] == []  # the old store cannot answer

    assert run_index.build(machine.kv) == 9
    check_consistent(machine.kv)
    assert [h["state"] for h in reader.run_page(RunQuery(dag_id="d1", state="FAILED"))[0]] == ["FAILED"]
    assert run_index.built_version(machine.kv) == run_index.VERSION
    assert run_index.build(machine.kv) == 0  # once per store

    # New commands on the upgraded store keep the indexes.
    machine.create("d2")
    machine.cancel(len(machine.runs) - 1)
    machine.flush()
    check_consistent(machine.kv)


def test_build_counts_a_run_from_before_the_task_id_list() -> None:
    assert run_index.counts_of(["SUCCESS", "FAILED"], ["a", "b", "c"]) == {
        "SUCCESS": 1,
        "FAILED": 1,
        "PENDING": 1,
    }
    assert run_index.counts_of(["SUCCESS", "SUCCESS"], None) == {"SUCCESS": 2}
