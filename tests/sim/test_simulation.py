"""The deterministic cluster simulator (``kiok.testing.sim``): many seeded worlds of runs
and faults, each checked against the failover guarantees of docs/cluster.md.

Seeds in this range reproduced the violations the soak found before they were fixed: a
worker whose connection broke waited out a back-off grown by earlier failures (up to 5 s)
and lost its runs to another driver, which ran succeeded tasks again (e.g. seeds 8, 27,
30, 42); a driver that had finished but whose final report was not yet acknowledged did not
claim its run on reconnecting, so a new leader reassigned it and its tasks ran again
(about half the seeds of 0-99). Later, wall-clock steps on a worker stalled runs waiting to
retry for as long as the step (``test_wall_clock_steps_stall_no_retry``: seeds 6, 7 and 9
before the worker's clock became steady). A failing seed prints the command that replays it."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import pytest

from kiok.testing.sim import Scenario, simulate
from kiok.testing.sim.workers import Execution, TaskPlan

SEEDS = 120


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    """Thousands of simulated disconnects are not worth logging; the level is put back, as
    later tests read kiok's log records."""
    logger = logging.getLogger("kiok")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


def test_seeded_worlds_keep_every_guarantee() -> None:
    failures = []
    for seed in range(SEEDS):
        outcome = simulate(Scenario(seed=seed, runs=8, window_s=30.0))
        assert outcome.runs >= 8, f"seed {seed}: only {outcome.runs} runs"
        if not outcome.ok:
            failures.append(f"seed {seed}: {outcome.violations[:3]}\n  replay: {outcome.replay_command()}")
    assert not failures, "\n".join(failures)


def test_a_seed_replays_the_same_world() -> None:
    first = simulate(Scenario(seed=11, runs=6, window_s=20.0))
    second = simulate(Scenario(seed=11, runs=6, window_s=20.0))
    assert first.faults and first.trace == second.trace
    assert [dataclasses.astuple(e) for e in first.executions] == [
        dataclasses.astuple(e) for e in second.executions
    ]


def test_the_checker_sees_an_attempt_executed_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The invariants are not vacuous: the same world with one execution recorded twice (on
    another worker) is reported, naming the task."""
    from kiok.testing.sim import invariants
    from kiok.testing.sim import world as sim_world

    original = invariants.check

    def doubled(world: sim_world.World) -> list[str]:
        ex = next(e for e in world.ledger.executions if e.outcome == "ok")
        world.ledger.executions.append(dataclasses.replace(ex, worker="w9"))
        return original(world)

    monkeypatch.setattr(sim_world, "check", doubled)
    outcome = simulate(Scenario(seed=3, runs=3, window_s=10.0, fault_every_s=0))
    assert any("executed more than once" in v for v in outcome.violations), outcome.violations


_CONTRACT = {
    "connection reset mid-run": ((0.4, "cut_worker"), (0.9, "cut_worker")),
    "worker killed": ((0.5, "kill_worker"),),
    "leader killed": ((0.5, "kill_leader"),),
    "leader steps down": ((0.5, "step_down"),),
}


@pytest.mark.parametrize("faults", list(_CONTRACT.values()), ids=list(_CONTRACT))
@pytest.mark.parametrize("transport", ["tcp", "memory"])
def test_link_contract(transport: str, faults: tuple[tuple[float, str], ...]) -> None:
    """kiok's real sockets and the simulator's in-memory network pass the same contract:
    through the same faults every run ends, no attempt runs twice, no succeeded task runs
    again on a live worker, and every line of every success is stored."""
    scenario = Scenario(
        seed=5,
        masters=3,
        workers=2,
        runs=3,
        window_s=2.0,
        faults=faults,
        dags=("chain", "diamond"),
        plan=TaskPlan(duration_s=(0.05, 0.3), fail_rate=0.0),
        settle_s=60.0,
    )
    outcome = simulate(scenario, transport=transport)
    assert outcome.ok, outcome.violations
    assert outcome.runs == 3
    assert all(isinstance(e, Execution) and e.outcome for e in outcome.executions)


@pytest.mark.parametrize("seed", [6, 7, 9])
def test_wall_clock_steps_stall_no_retry(seed: int) -> None:
    """Workers' wall clocks step a minute back again and again while tasks fail and wait a
    second to retry: on the raw wall clock each retry waited out the step too (runs stalled
    for 50–230 s); a worker's steady clock keeps them at a second."""
    faults = tuple((1.0 + 0.5 * i, f"clock_jump:w{1 + i % 3}:-60000") for i in range(12))
    scenario = Scenario(
        seed=seed,
        faults=faults,
        runs=6,
        window_s=6.0,
        dags=("diamond",),
        plan=TaskPlan(fail_rate=0.5, duration_s=(0.05, 0.3)),
    )
    outcome = simulate(scenario)
    assert outcome.ok, outcome.violations


_LEADER_CLOCK = {
    "a step back just before a worker dies": ((10.0, "clock_jump:leader:-40000"), (10.05, "kill_worker")),
    "a step back during a new leader's grace": (
        (5.0, "kill_leader"),
        (5.3, "clock_jump:leader:-40000"),
        (5.35, "kill_worker"),
    ),
    "a step forward during a new leader's grace": (
        (5.0, "kill_leader"),
        (5.01, "cut_worker"),
        (5.3, "clock_jump:leader:40000"),
    ),
}


@pytest.mark.parametrize("faults", list(_LEADER_CLOCK.values()), ids=list(_LEADER_CLOCK))
def test_a_leaders_wall_clock_steps_change_no_lease(faults: tuple[tuple[float, str], ...]) -> None:
    """A leader times a lost worker and a new leader's reconnect grace on the monotonic
    clock: its wall clock stepping 40 s either way neither gives a live driver's runs away
    nor stalls a dead one's."""
    for seed in range(3):
        outcome = simulate(Scenario(seed=seed, faults=faults, runs=6, window_s=20.0))
        assert outcome.ok, f"seed {seed}: {outcome.violations}"


def test_late_frames_of_a_lagging_connection_are_harmless() -> None:
    """A worker's open connections hang (a slow path) while new ones work: it reconnects and
    replays, then the old connection delivers its frames late — after, and as well as, the
    new connection's (duplicated, reordered) — and loses the acknowledgements sent on it."""
    faults = tuple((2.0 + 3.0 * i, "lag_worker") for i in range(8))
    for seed in range(4):
        outcome = simulate(Scenario(seed=seed, faults=faults, runs=8, window_s=26.0))
        assert outcome.ok, f"seed {seed}: {outcome.violations}"
        assert sum("lag" in f for f in outcome.faults) == 8


def test_slow_disks_around_leader_kills() -> None:
    """For seconds at a time every commit takes 0.2–2 s (fsyncs stalled on a quorum), between
    leader kills: the leases and the outbox wait for commits that are late, not lost."""
    faults = tuple((2.0 + 4.0 * i, "slow_disk" if i % 2 == 0 else "kill_leader") for i in range(6))
    for seed in range(2):
        outcome = simulate(Scenario(seed=seed, faults=faults, runs=8, window_s=24.0))
        assert outcome.ok, f"seed {seed}: {outcome.violations}"


_LONG_TASKS = TaskPlan(duration_s=(0.5, 3.0))
_SHORT_TASKS = TaskPlan(duration_s=(0.05, 0.6))
#: Faults, seeds, task durations and how many runs in how many seconds.
_CANCELS = {
    "while the driver is cut off": (
        tuple((3.0 + 3.0 * i, "cancel_cut_off") for i in range(6)),
        (0, 1, 2),
        _LONG_TASKS,
        8,
        20.0,
    ),
    "just before the leader dies": (
        tuple(x for i in range(6) for x in ((3.0 + 3.0 * i, "cancel_run"), (3.008 + 3.0 * i, "kill_leader"))),
        (4, 5),
        _LONG_TASKS,
        8,
        20.0,
    ),
    "while the driver waits to start tasks": (
        tuple((1.0 + 0.7 * i, "cancel_run") for i in range(40)),
        (0, 3, 9),
        _SHORT_TASKS,
        10,
        30.0,
    ),
}


@pytest.mark.parametrize("case", list(_CANCELS.values()), ids=list(_CANCELS))
def test_a_cancelled_runs_driver_walks_no_further(
    case: tuple[tuple[tuple[float, str], ...], tuple[int, ...], TaskPlan, int, float],
) -> None:
    """Users cancel running runs: while their driver is isolated for 2 s (it keeps its runs),
    just before the leader that commits the cancel dies, or while the driver has tasks queued
    or waiting to retry. Tasks ran after their run had ended CANCELLED: the CANCEL went out
    once, into a closed connection or from a master that then died, and was never said again
    (every seed of the first case, seed 5 of the second); a cancel that ended the run at once
    was not sent at all (seeds 0 and 9 of the third); and a driver told of the cancel while
    the start of an attempt was being confirmed ran it all the same (seeds 0 and 3)."""
    faults, seeds, plan, runs, window_s = case
    for seed in seeds:
        outcome = simulate(Scenario(seed=seed, faults=faults, runs=runs, window_s=window_s, plan=plan))
        assert outcome.ok, f"seed {seed}: {outcome.violations}"
        assert sum(f.split()[1] == "cancel" for f in outcome.faults) >= 2
