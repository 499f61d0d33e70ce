"""A worker whose task slots are all busy takes no new run; the run waits, says why, and
starts as soon as a slot frees."""

from __future__ import annotations

from typing import Any

from kiok.testing.process import Standalone


def test_runs_wait_for_capacity_and_start_when_a_slot_frees(standalone_factory: Any) -> None:
    kiok: Standalone = standalone_factory(env={"KIOK_WORKER_TASK_SLOTS": "1"})
    kiok.register("dag: {id: busy}\ntasks: [{id: t, script: 'sleep 1.5'}]\n")
    first = kiok.trigger("busy")
    kiok.wait_for(lambda: kiok.run(first)["tasks"]["t"]["state"] == "RUNNING", 10, "the first run's task")
    second = kiok.trigger("busy")
    waiting = kiok.wait_for(lambda: (r := kiok.run(second))["waiting"] and r, 10, "a waiting reason")
    assert waiting["state"] == "PENDING" and "capacity" in waiting["waiting"]
    assert "capacity" in waiting["tasks"]["t"]["waiting"]
    done_first = kiok.wait_run(first)
    done_second = kiok.wait_run(second)
    assert done_second["state"] == "SUCCESS"
    assert done_second["tasks"]["t"]["startedAt"] >= done_first["tasks"]["t"]["endedAt"]
    # It started promptly once the slot freed (not after a long back-off).
    from datetime import datetime

    def ts(s: str) -> float:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()

    assert ts(done_second["tasks"]["t"]["startedAt"]) - ts(done_first["tasks"]["t"]["endedAt"]) < 1.0
