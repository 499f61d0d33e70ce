"""Wait reasons shown for tasks that are not running."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiok.core.states import TaskRecord, TaskState
from kiok.core.waiting import presented, presented_one, presented_with_reason, task_wait_reason
from kiok.dag.spec import DagSpec, TaskSpec, TriggerRule
from kiok.ids import DagId, TaskId

S = TaskState
SPEC = DagSpec(
    id=DagId("d"),
    tasks=(
        TaskSpec(id=TaskId("a")),
        TaskSpec(id=TaskId("b")),
        TaskSpec(id=TaskId("c")),
        TaskSpec(id=TaskId("x"), requires=(TaskId("a"), TaskId("b"), TaskId("c"))),
        TaskSpec(id=TaskId("y"), requires=(TaskId("a"),), trigger_rule=TriggerRule.ALL_FAILED),
    ),
)


def reason(tid: str, **tasks: TaskRecord) -> str | None:
    return task_wait_reason(SPEC, {TaskId(k): v for k, v in tasks.items()}, TaskId(tid), 1_000)


def test_pending_names_the_upstreams_still_open() -> None:
    assert reason("x", b=TaskRecord(S.SUCCESS)) == "waiting for upstream: a, c"
    assert reason("x", a=TaskRecord(S.RETRYING), b=TaskRecord(S.SUCCESS), c=TaskRecord(S.RUNNING)) == (
        "waiting for upstream: a, c"
    )


def test_pending_whose_rule_is_decided() -> None:
    assert reason("a") == "waiting for the driver to queue it"
    assert (
        reason("y", a=TaskRecord(S.SUCCESS))
        == "will be skipped: trigger rule all_failed can no longer be met"
    )


def test_queued_and_retrying() -> None:
    assert reason("a", a=TaskRecord(S.QUEUED)) == "waiting for a free task slot"
    rec = TaskRecord(S.RETRYING, attempt=2, retry_at_ms=1_714_564_800_000)
    assert reason("a", a=rec) == "retry (attempt 3) at 2024-05-01T12:00:00Z"
    due = TaskRecord(S.RETRYING, attempt=1, retry_at_ms=500)
    assert reason("a", a=due) == "retry (attempt 2) at 1970-01-01T00:00:00Z (due)"


@pytest.mark.parametrize("state", [S.RUNNING, S.SUCCESS, S.FAILED, S.SKIPPED, S.CANCELLED])
def test_running_and_terminal_have_no_reason(state: TaskState) -> None:
    assert reason("a", a=TaskRecord(state)) is None


def test_unknown_task_raises() -> None:
    with pytest.raises(KeyError):
        reason("nope")


def states(driven: bool, **tasks: TaskRecord) -> dict[str, str]:
    shown = presented(SPEC, {TaskId(k): v for k, v in tasks.items()}, driven=driven)
    return {tid: rec.state.value for tid, rec in shown.items()}


def test_a_driven_run_shows_tasks_its_upstreams_allow_as_queued() -> None:
    # The driver does not report queuing a first attempt: the view derives it.
    assert states(True) == {"a": "QUEUED", "b": "QUEUED", "c": "QUEUED", "x": "PENDING", "y": "PENDING"}
    done = TaskRecord(S.SUCCESS, attempt=1)
    assert states(True, a=done, b=done, c=TaskRecord(S.RUNNING, attempt=1))["x"] == "PENDING"
    shown = states(True, a=done, b=done, c=done)
    assert shown["x"] == "QUEUED"
    assert shown["y"] == "PENDING"  # all_failed can no longer be met: it will be skipped
    assert states(True, a=TaskRecord(S.FAILED, attempt=1))["y"] == "QUEUED"


def test_without_a_driver_nothing_is_shown_queued() -> None:
    assert set(states(False).values()) == {"PENDING"}
    lost = TaskRecord(S.QUEUED, attempt=1, error="driver lost")
    assert states(False, a=lost)["a"] == "QUEUED"  # stored by the masters: shown as stored


@given(
    records=st.dictionaries(
        st.sampled_from([t.id for t in SPEC.tasks]),
        st.builds(
            TaskRecord,
            state=st.sampled_from(S),
            attempt=st.integers(0, 3),
            retry_at_ms=st.none() | st.integers(0, 2_000),
        ),
    ),
    driven=st.booleans(),
)
def test_presented_with_reason_is_presented_one_and_the_reason_of_the_presented(
    records: dict[TaskId, TaskRecord], driven: bool
) -> None:
    shown = presented(SPEC, records, driven=driven)
    for task in SPEC.tasks:
        expected = (
            presented_one(SPEC, records, task.id, driven=driven),
            task_wait_reason(SPEC, shown, task.id, 1_000),
        )
        assert presented_with_reason(SPEC, records, task.id, driven=driven, now_ms=1_000) == expected
