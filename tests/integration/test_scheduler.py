"""The cron scheduler and coordinator against a real RocksDB store, with a manual clock:
catch-up caps, (DAG, fire time) idempotency, DST, pause, max_active_runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kiok.master.node import MasterNode
from kiok.store import commands as c
from tests.scheduler_node import Clock, ms, scheduler_node


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[MasterNode, Clock]]:
    async with scheduler_node(tmp_path) as made:
        yield made


def spec(dag_id: str, schedule: str, *, tz: str = "UTC", catchup: bool = False) -> dict[str, object]:
    return {
        "dag": {
            "id": dag_id,
            "schedule": schedule,
            "timezone": tz,
            "catchup": catchup,
            "max_active_runs": 100,
        },
        "tasks": [{"id": "t", "type": "shell", "script": "true"}],
    }


def runs_of(n: MasterNode, dag_id: str) -> list[dict[str, Any]]:
    return list(reversed(n.reader.runs(dag_id=dag_id, limit=500)[0]))


async def test_catchup_creates_one_run_per_missed_interval_capped_newest_kept(
    node: tuple[MasterNode, Clock],
) -> None:
    n, clock = node
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=spec("hourly", "0 * * * *", catchup=True)))
    clock.ms += 30 * 3600_000  # 30 hourly intervals missed while "down"
    await n.scheduler.tick()
    runs = runs_of(n, "hourly")
    assert len(runs) == 24
    scheduled = [r["scheduledMs"] for r in runs]
    assert scheduled == sorted(scheduled) and scheduled[-1] == ms("2026-03-29T18:00:00+00:00")
    assert {r["trigger"] for r in runs[:-1]} == {"catchup"} and runs[-1]["trigger"] == "schedule"
    # Proposing the same intervals again (e.g. a new leader re-firing) creates nothing new.
    await n.log.propose(
        c.FireSchedule(at_ms=clock(), dag_id="hourly", fire_times=tuple(scheduled), watermark_ms=clock())
    )
    await n.scheduler.tick()
    assert len(runs_of(n, "hourly")) == 24


async def test_without_catchup_only_the_latest_missed_interval_runs(node: tuple[MasterNode, Clock]) -> None:
    n, clock = node
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=spec("nocatch", "*/10 * * * *")))
    clock.ms += 3600_000
    await n.scheduler.tick()
    runs = runs_of(n, "nocatch")
    assert [r["scheduledMs"] for r in runs] == [ms("2026-03-28T13:00:00+00:00")]


async def test_dst_spring_forward_fires_once_at_the_shifted_time(node: tuple[MasterNode, Clock]) -> None:
    n, clock = node
    await n.log.propose(
        c.RegisterDag(at_ms=clock(), spec=spec("berlin", "30 2 * * *", tz="Europe/Berlin", catchup=True))
    )
    clock.ms = ms("2026-03-30T12:00:00+02:00")
    await n.scheduler.tick()
    fired = [r["scheduledMs"] for r in runs_of(n, "berlin")]
    # 02:30 does not exist on 2026-03-29 in Berlin: it fires at 03:00 CEST, then 02:30 the next day.
    assert fired == [ms("2026-03-29T03:00:00+02:00"), ms("2026-03-30T02:30:00+02:00")]


async def test_paused_dags_do_not_fire_and_new_dags_arm_from_now(node: tuple[MasterNode, Clock]) -> None:
    n, clock = node
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=spec("p", "* * * * *")))
    await n.log.propose(c.SetDagPaused(at_ms=clock(), dag_id="p", paused=True))
    clock.ms += 5 * 60_000
    await n.scheduler.tick()
    assert runs_of(n, "p") == []
    await n.scheduler.tick()  # still nothing, and no run for the time before registration
    await n.log.propose(c.SetDagPaused(at_ms=clock(), dag_id="p", paused=False))
    await n.scheduler.tick()
    assert len(runs_of(n, "p")) == 1


async def test_max_active_runs_holds_runs_pending_with_a_reason(node: tuple[MasterNode, Clock]) -> None:
    n, clock = node
    doc = spec("limited", "0 0 1 1 *")
    doc["dag"]["max_active_runs"] = 1  # type: ignore[index]
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=doc))
    first = (await n.log.propose(c.CreateRun(at_ms=clock(), dag_id="limited")))["runId"]
    second = (await n.log.propose(c.CreateRun(at_ms=clock(), dag_id="limited")))["runId"]
    await n.log.propose(c.AssignRun(at_ms=clock(), run_id=first, worker="w", term=1))
    await n.coordinator.dispatch_pass()
    assert "max_active_runs (1)" in n.coordinator.waiting[second]
    assert n.reader.run(second)["state"] == "PENDING"  # type: ignore[index]


async def test_a_tick_reads_only_the_dags_changed_since_the_last(
    node: tuple[MasterNode, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a DAG's record decodes its whole spec: a tick that read every DAG cost ~80 ms
    of the event loop each second with 500 DAGs of 50 tasks. A DAG is read again only after
    a batch changed it: registered, paused or unpaused, deleted, or fired (its watermark)."""
    n, clock = node
    for i in range(20):
        await n.log.propose(c.RegisterDag(at_ms=clock(), spec=spec(f"d{i:02}", "0 3 * * *")))
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=spec("minutely", "* * * * *")))
    reads: list[str] = []
    dags, dag = n.reader.dags, n.reader.dag

    def every_dag() -> Iterator[dict[str, Any]]:
        reads.append("*")
        return dags()

    def one_dag(dag_id: str) -> dict[str, Any] | None:
        reads.append(dag_id)
        return dag(dag_id)

    monkeypatch.setattr(n.reader, "dags", every_dag)
    monkeypatch.setattr(n.reader, "dag", one_dag)

    await n.scheduler.tick()
    assert reads == ["*"]  # each DAG once, when the scheduler starts
    reads.clear()
    await n.scheduler.tick()
    assert reads == []

    clock.ms += 60_000
    await n.scheduler.tick()  # minutely fires: its watermark moves
    assert len(runs_of(n, "minutely")) == 1
    await n.scheduler.tick()
    await n.scheduler.tick()
    assert reads == ["minutely"]
    assert len(runs_of(n, "minutely")) == 1

    reads.clear()
    await n.log.propose(c.SetDagPaused(at_ms=clock(), dag_id="minutely", paused=True))
    await n.log.propose(c.DeleteDag(at_ms=clock(), dag_id="d07"))
    clock.ms += 60_000
    await n.scheduler.tick()
    await n.scheduler.tick()
    assert sorted(reads) == ["d07", "minutely"]
    assert len(runs_of(n, "minutely")) == 1  # paused

    await n.log.propose(c.SetDagPaused(at_ms=clock(), dag_id="minutely", paused=False))
    await n.scheduler.tick()
    assert len(runs_of(n, "minutely")) == 2


async def test_a_fire_that_races_with_a_pause_leaves_the_interval_for_the_unpause(
    node: tuple[MasterNode, Clock],
) -> None:
    """The scheduler looked before the pause was applied and proposed the fire after: the
    fire created nothing (paused) but moved the watermark, so the interval was lost for good,
    ``catchup: true`` or not, and nothing said so."""
    n, clock = node
    await n.log.propose(c.RegisterDag(at_ms=clock(), spec=spec("hourly", "0 * * * *", catchup=True)))
    clock.ms += 3_600_000
    due = ms("2026-03-28T13:00:00+00:00")
    await n.log.propose(c.SetDagPaused(at_ms=clock(), dag_id="hourly", paused=True))
    await n.log.propose(
        c.FireSchedule(at_ms=clock(), dag_id="hourly", fire_times=(due,), watermark_ms=clock())
    )
    assert runs_of(n, "hourly") == []
    await n.log.propose(c.SetDagPaused(at_ms=clock(), dag_id="hourly", paused=False))
    await n.scheduler.tick()
    assert [r["scheduledMs"] for r in runs_of(n, "hourly")] == [due]
