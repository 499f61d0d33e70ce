"""TaskRecord round trips and the terminal state sets."""

from __future__ import annotations

import json

import msgpack
import pytest

from kiok.core.states import TERMINAL_RUN_STATES, TERMINAL_TASK_STATES, RunState, TaskRecord, TaskState

FULL = TaskRecord(
    state=TaskState.RETRYING,
    attempt=2,
    started_at_ms=1_000,
    ended_at_ms=2_000,
    exit_code=3,
    error="boom",
    worker="w1",
    retry_at_ms=12_000,
)


@pytest.mark.parametrize("rec", [TaskRecord(), FULL])
def test_round_trip_through_msgpack_and_json(rec: TaskRecord) -> None:
    assert TaskRecord.from_dict(msgpack.unpackb(msgpack.packb(rec.to_dict()))) == rec
    assert TaskRecord.from_dict(json.loads(json.dumps(rec.to_dict()))) == rec


def test_to_dict_leaves_out_none_and_uses_stable_keys() -> None:
    assert TaskRecord().to_dict() == {"state": "PENDING", "attempt": 0}
    assert FULL.to_dict() == {
        "state": "RETRYING",
        "attempt": 2,
        "startedMs": 1_000,
        "endedMs": 2_000,
        "exitCode": 3,
        "error": "boom",
        "worker": "w1",
        "retryAtMs": 12_000,
    }


def test_from_dict_tolerates_missing_and_unknown_keys() -> None:
    assert TaskRecord.from_dict({}) == TaskRecord()
    assert TaskRecord.from_dict({"state": "SUCCESS", "attempt": 1, "future": 1}).state is TaskState.SUCCESS


def test_terminal_sets() -> None:
    assert {s for s in TaskState if TaskRecord(state=s).is_terminal} == TERMINAL_TASK_STATES
    assert {
        TaskState.SUCCESS,
        TaskState.FAILED,
        TaskState.SKIPPED,
        TaskState.CANCELLED,
    } == TERMINAL_TASK_STATES
    assert {RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED} == TERMINAL_RUN_STATES
