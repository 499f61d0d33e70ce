"""Traces and cancel attribution with 3 real masters (Raft) and 1 real worker over TCP.

A trigger sent to a follower is forwarded to the leader; the run must still be one trace:
the follower's request span, the leader's (its child), ``kiok.run`` and each attempt span
share the trace id, and the task's ``TRACEPARENT`` names its attempt's span. A cancel sent to
a follower reaches the worker as a CANCEL naming the user, which the task's own log repeats.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kiok.testing.process import MasterGroup
from tests.integration.test_traces_and_queue_wait import Receiver

pytestmark = pytest.mark.slow

TRIGGER = "POST /api/v1/dags/{dag_id}/runs"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_a_trigger_forwarded_by_a_follower_is_one_trace(tmp_path: Path, receiver: Receiver) -> None:
    group = MasterGroup(
        tmp_path,
        extra_env={
            "KIOK_WORKER_HEARTBEAT_TIMEOUT_MS": "3000",
            "KIOK_WORKER_HEARTBEAT_INTERVAL_MS": "300",
            "KIOK_OTEL_ENABLED": "true",
            "KIOK_OTEL_ENDPOINT": receiver.url,
        },
    )
    group.start()
    worker = None
    try:
        leader = group.leader()
        follower = group.followers(leader)[0]
        worker = group.add_worker(follower, "w1")
        for m in group.masters.values():
            m.wait_open()
        dag = follower.register(
            "dag: {id: ha_traced}\ntasks:\n"
            "  - {id: a, script: 'echo \"TP=$TRACEPARENT\"'}\n"
            "  - {id: b, requires: [a], script: 'echo b'}\n"
        )
        # No traceparent from the client: the follower's request span starts the trace.
        r = follower.api("POST", f"/api/v1/dags/{dag}/runs", json={})
        assert r.status_code == 201, r.text
        run_id = r.json()["runId"]
        assert leader.wait_run(run_id, 60)["state"] == "SUCCESS"
        log = leader.log(run_id, "a")

        # A cancel sent to a follower: the worker's task log names who cancelled.
        slow = follower.register(
            "dag: {id: ha_cancel}\ntasks: [{id: slow, script: 'echo begun; sleep 60'}]\n"
        )
        cancel_id = follower.trigger(slow)
        leader.wait_for(lambda: "begun" in leader.log(cancel_id, "slow"), 30, "the slow task to start")
        assert follower.api("POST", f"/api/v1/runs/{cancel_id}/cancel").status_code == 200
        assert leader.wait_run(cancel_id, 30)["state"] == "CANCELLED"
        cancelled_log = leader.wait_for(
            lambda: (text := leader.log(cancel_id, "slow")) and "[kiok] attempt 1 cancelled" in text and text,
            30,
            "the cancel line in the task log",
        )
        assert "[kiok] attempt 1 cancelled by admin: the run was cancelled;" in cancelled_log, cancelled_log

        runs = leader.wait_for(
            lambda: [
                s for s in receiver.named("kiok.run") if s["attrs"]["kiok.run.id"].string_value == run_id
            ],
            30,
            "the run span",
        )
        attempts = leader.wait_for(
            lambda: (
                found
                if len(
                    found := [
                        s
                        for s in receiver.named("kiok.task.attempt")
                        if s["attrs"]["kiok.run.id"].string_value == run_id
                    ]
                )
                >= 2
                else None
            ),
            30,
            "the attempt spans",
        )
        triggers = leader.wait_for(
            lambda: found if len(found := receiver.named(TRIGGER)) >= 2 else None,
            30,
            "the trigger spans of the follower and the leader",
        )
    finally:
        if worker is not None:
            worker.stop()
        group.stop()
    (run,) = runs
    trace = run["trace"]
    first = [s for s in triggers if s["trace"] == trace]
    # The follower's span (the root: the client sent none) and the leader's, its child.
    assert len(first) == 2, triggers
    outer = next(s for s in first if s["parent"] == "")
    inner = next(s for s in first if s is not outer)
    assert inner["parent"] == outer["span"]
    assert run["parent"] == inner["span"]
    assert {s["trace"] for s in attempts} == {trace}
    by_task = {s["attrs"]["kiok.task.id"].string_value: s for s in attempts}
    assert sorted(by_task) == ["a", "b"] and all(s["parent"] == run["span"] for s in by_task.values())
    assert f"TP=00-{trace}-{by_task['a']['span']}-01" in log, log
