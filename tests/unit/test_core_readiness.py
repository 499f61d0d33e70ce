"""Trigger rules, the driver's graph walk, and run outcomes."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from kiok.core import readiness
from kiok.core.readiness import advance, run_outcome, topological_order, upstream_verdict
from kiok.core.states import RunState, TaskRecord, TaskState
from kiok.core.transitions import TaskEvent, TaskEventKind, apply_task_event
from kiok.dag.spec import DagSpec, TaskSpec, TriggerRule
from kiok.errors import DagValidationError
from kiok.ids import DagId, TaskId

S = TaskState
R = TriggerRule
E = TaskEventKind
P, Q, RUN, RT = S.PENDING, S.QUEUED, S.RUNNING, S.RETRYING
OK, KO, SK, CX = S.SUCCESS, S.FAILED, S.SKIPPED, S.CANCELLED


def t(tid: str, *requires: str, rule: R = R.ALL_SUCCESS) -> TaskSpec:
    return TaskSpec(id=TaskId(tid), requires=tuple(TaskId(r) for r in requires), trigger_rule=rule)


def dag(*tasks: TaskSpec) -> DagSpec:
    return DagSpec(id=DagId("d"), tasks=tasks)


def states(tasks: Mapping[TaskId, TaskRecord]) -> dict[str, str]:
    return {tid: rec.state.name.lower() for tid, rec in tasks.items()}


def step(tasks: Mapping[TaskId, TaskRecord], tid: str, *events: TaskEvent) -> dict[TaskId, TaskRecord]:
    out = dict(tasks)
    for ev in events:
        out[TaskId(tid)], _ = apply_task_event(out.get(TaskId(tid), TaskRecord()), ev)
    return out


def run_ok(tasks: Mapping[TaskId, TaskRecord], tid: str, at: int = 1) -> dict[TaskId, TaskRecord]:
    return step(tasks, tid, TaskEvent(E.START, at), TaskEvent(E.SUCCEED, at))


def run_ko(tasks: Mapping[TaskId, TaskRecord], tid: str, at: int = 1) -> dict[TaskId, TaskRecord]:
    return step(tasks, tid, TaskEvent(E.START, at), TaskEvent(E.FAIL, at))


# --- upstream_verdict -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "ups", "expected"),
    [
        (R.ALL_SUCCESS, [OK, OK], "ready"),
        (R.ALL_SUCCESS, [OK, RUN], "wait"),
        (R.ALL_SUCCESS, [RUN, KO], "skip"),
        (R.ALL_SUCCESS, [P, SK], "skip"),
        (R.ALL_SUCCESS, [OK, CX], "skip"),
        (R.ALL_SUCCESS, [RT, OK], "wait"),
        (R.ALL_DONE, [OK, KO, SK, CX], "ready"),
        (R.ALL_DONE, [KO, RT], "wait"),
        (R.ALL_DONE, [Q], "wait"),
        (R.ONE_FAILED, [RUN, KO], "ready"),
        (R.ONE_FAILED, [RT, OK], "wait"),
        (R.ONE_FAILED, [OK, SK, CX], "skip"),
        (R.ONE_FAILED, [OK, P], "wait"),
        (R.ALL_FAILED, [KO, KO], "ready"),
        (R.ALL_FAILED, [KO, RUN], "wait"),
        (R.ALL_FAILED, [RUN, OK], "skip"),
        (R.ALL_FAILED, [KO, SK], "skip"),
    ],
)
def test_upstream_verdict(rule: R, ups: list[TaskState], expected: str) -> None:
    assert upstream_verdict(rule, ups) == expected


@pytest.mark.parametrize("rule", list(R))
def test_no_upstreams_is_ready(rule: R) -> None:
    assert upstream_verdict(rule, []) == "ready"


# --- advance ----------------------------------------------------------------------------------


def test_first_advance_queues_roots_and_fills_missing_tasks() -> None:
    spec = dag(t("a"), t("b", "a"), t("c", "b"))
    adv = advance(spec, {}, 0)
    assert states(adv.tasks) == {"a": "queued", "b": "pending", "c": "pending"}
    assert (adv.changed, adv.next_wakeup_ms, adv.run_state) == (("a",), None, None)


def test_skip_cascades_and_all_done_still_runs() -> None:
    spec = dag(t("a"), t("b", "a"), t("c", "b", rule=R.ALL_DONE), t("d", "b"))
    tasks = run_ko(advance(spec, {}, 0).tasks, "a")
    adv = advance(spec, tasks, 5)
    assert states(adv.tasks) == {"a": "failed", "b": "skipped", "c": "queued", "d": "skipped"}
    assert adv.changed == ("b", "c", "d")
    assert adv.tasks[TaskId("b")].ended_at_ms == 5
    adv = advance(spec, run_ok(adv.tasks, "c"), 6)
    assert adv.run_state is RunState.FAILED


def test_one_failed_downstream_of_a_skip_is_skipped_and_run_succeeds() -> None:
    spec = dag(t("a"), t("b", "a", rule=R.ALL_FAILED), t("c", "b", rule=R.ONE_FAILED))
    adv = advance(spec, run_ok(advance(spec, {}, 0).tasks, "a"), 1)
    assert states(adv.tasks) == {"a": "success", "b": "skipped", "c": "skipped"}
    assert adv.run_state is RunState.SUCCESS


def test_diamond_with_one_failed_branch() -> None:
    spec = dag(t("a"), t("b", "a"), t("c", "a"), t("d", "b", "c"), t("e", "b", "c", rule=R.ONE_FAILED))
    adv = advance(spec, run_ok(advance(spec, {}, 0).tasks, "a"), 1)
    assert adv.changed == ("b", "c")
    adv = advance(spec, run_ok(adv.tasks, "b"), 2)
    assert adv.changed == ()
    adv = advance(spec, run_ko(adv.tasks, "c"), 3)
    assert states(adv.tasks) == {"a": "success", "b": "success", "c": "failed", "d": "skipped", "e": "queued"}


def test_independent_branch_keeps_running_after_a_failure() -> None:
    spec = dag(t("a"), t("b", "a"), t("x"), t("y", "x"))
    tasks = run_ko(advance(spec, {}, 0).tasks, "a")
    adv = advance(spec, run_ok(tasks, "x"), 1)
    assert states(adv.tasks) == {"a": "failed", "b": "skipped", "x": "success", "y": "queued"}
    assert adv.run_state is None


def test_due_retries_are_requeued_and_the_next_one_wakes_the_driver() -> None:
    spec = dag(t("a"), t("b"))
    tasks = {
        TaskId("a"): TaskRecord(RT, attempt=1, retry_at_ms=100),
        TaskId("b"): TaskRecord(RT, attempt=2, retry_at_ms=300),
    }
    adv = advance(spec, tasks, 50)
    assert (adv.changed, adv.next_wakeup_ms) == ((), 100)
    adv = advance(spec, adv.tasks, 100)
    assert (adv.changed, adv.next_wakeup_ms) == (("a",), 300)
    assert adv.tasks[TaskId("a")] == TaskRecord(Q, attempt=1)


def test_cancel_leaves_running_tasks_to_the_caller() -> None:
    spec = dag(t("a"), t("b"), t("c", "a"), t("d"), t("e"))
    tasks = {
        TaskId("a"): TaskRecord(RUN, attempt=1),
        TaskId("b"): TaskRecord(RT, attempt=1, retry_at_ms=10**9),
        TaskId("d"): TaskRecord(OK, attempt=1),
        TaskId("e"): TaskRecord(Q),
    }
    adv = advance(spec, tasks, 7, cancelled=True)
    assert states(adv.tasks) == {
        "a": "running",
        "b": "cancelled",
        "c": "cancelled",
        "d": "success",
        "e": "cancelled",
    }
    assert (adv.changed, adv.next_wakeup_ms, adv.run_state) == (("b", "e", "c"), None, None)
    adv = advance(spec, step(adv.tasks, "a", TaskEvent(E.CANCEL, 8)), 8, cancelled=True)
    assert adv.run_state is RunState.CANCELLED


def test_lost_driver_requeues_only_running_tasks() -> None:
    spec = dag(t("a"), t("b", "a"))
    tasks = step(advance(spec, {}, 0).tasks, "a", TaskEvent(E.START, 1), TaskEvent(E.LOST, 2))
    adv = advance(spec, tasks, 3)
    assert states(adv.tasks) == {"a": "queued", "b": "pending"} and adv.changed == ()
    assert step(adv.tasks, "a", TaskEvent(E.START, 4))[TaskId("a")].attempt == 2


def test_extra_records_pass_through() -> None:
    extra = {TaskId("__run__"): TaskRecord(RUN)}
    assert advance(dag(t("a")), extra, 0).tasks[TaskId("__run__")] is extra[TaskId("__run__")]


def test_bad_graphs_are_refused() -> None:
    with pytest.raises(DagValidationError, match="cycle among tasks a, b"):
        advance(dag(t("a", "b"), t("b", "a"), t("c")), {}, 0)
    with pytest.raises(DagValidationError, match="unknown task 'zz'"):
        advance(dag(t("a", "zz")), {}, 0)


@pytest.mark.parametrize(
    ("finals", "cancelled", "expected"),
    [
        ([OK, SK], False, RunState.SUCCESS),
        ([OK, KO, SK], False, RunState.FAILED),
        ([OK, KO], True, RunState.CANCELLED),
        ([OK, CX], False, RunState.CANCELLED),
        ([OK, RUN], True, None),
        ([], False, RunState.SUCCESS),
    ],
)
def test_run_outcome(finals: list[TaskState], cancelled: bool, expected: RunState | None) -> None:
    tasks = {TaskId(str(i)): TaskRecord(s) for i, s in enumerate(finals)}
    assert run_outcome(tasks, list(tasks), cancelled) is expected


def test_run_outcome_counts_a_missing_task_as_pending() -> None:
    assert run_outcome({TaskId("a"): TaskRecord(OK)}, [TaskId("a"), TaskId("b")], False) is None


# --- cost: O(tasks + edges) per call, topological order computed once -------------------------


def fan_out(width: int) -> DagSpec:
    mids = [t(f"m{i}", "root") for i in range(width)]
    return dag(t("root"), *mids, t("sink", *(m.id for m in mids)))


def layers(depth: int, width: int) -> DagSpec:
    out = [t(f"l0_{j}") for j in range(width)]
    for i in range(1, depth):
        out += [t(f"l{i}_{j}", *(f"l{i - 1}_{k}" for k in range(width))) for j in range(width)]
    return dag(*out)


@pytest.mark.parametrize("spec", [fan_out(500), layers(10, 20)], ids=["fan-out", "layers"])
def test_driving_a_wide_dag_is_linear_per_advance(spec: DagSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    edges = sum(len(x.requires) for x in spec.tasks)
    looked_at: list[int] = []
    sorts: list[int] = []
    real_verdict, real_plan = readiness.upstream_verdict, readiness._plan

    def counting_verdict(rule: R, ups: list[TaskState]) -> str:
        looked_at[-1] += len(ups)
        return real_verdict(rule, ups)

    def counting_plan(s: DagSpec) -> readiness.GraphPlan:
        sorts.append(1)
        return real_plan(s)

    monkeypatch.setattr(readiness, "upstream_verdict", counting_verdict)
    monkeypatch.setattr(readiness, "_plan", counting_plan)
    tasks: Mapping[TaskId, TaskRecord] = {}
    now = 0
    while True:
        looked_at.append(0)
        adv = advance(spec, tasks, now)
        if adv.run_state is not None:
            break
        queued = next(tid for tid, rec in adv.tasks.items() if rec.state is Q)
        tasks, now = run_ok(adv.tasks, queued, now), now + 1
    assert adv.run_state is RunState.SUCCESS
    assert len(looked_at) == len(spec.tasks) + 1
    assert max(looked_at) <= edges
    assert sum(sorts) <= 1


def test_topological_order_is_cached_per_spec() -> None:
    spec = dag(t("b", "a"), t("a"))
    assert [x.id for x in topological_order(spec)] == ["a", "b"]
    assert topological_order(spec) is topological_order(spec)
    plan = readiness.graph_plan(spec)
    assert plan is readiness.graph_plan(spec)
    assert plan.downstream == {"a": ("b",), "b": ()} and plan.position == {"a": 0, "b": 1}
