"""What users (and a misbehaving worker) do to a simulated world besides triggering runs:
pause a DAG and unpause it, switch maintenance mode on and off, re-run a finished run,
trigger a burst of runs of one DAG (then, half the time, pause it at once), and a worker
that refuses (NAKs) every run it is offered for a while. Each user action goes through
whoever leads, retried through failovers as a client would; a pause and a maintenance
window always end, within 6 s, so that every run can finish."""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from kiok.core.states import TERMINAL_RUN_STATES
from kiok.errors import Conflict, InvalidInput, KiokError, NotFound
from kiok.store import commands as c

if TYPE_CHECKING:
    from kiok.testing.sim.world import World

#: The actions, and how often relative to each other.
KINDS = (
    "pause_dag",
    "pause_dag",
    "maintenance",
    "rerun_run",
    "burst",
    "burst",
    "refuse_offers",
    "refuse_offers",
)
#: Only when listed (``Scenario.faults``): re-run a finished run of ``serial`` or ``pair``.
LISTED_ONLY = ("rerun_limited",)
#: The DAGs a re-run may pick (a re-run is queued like a new run: it waits for its DAG's
#: ``max_active_runs``, ``test_a_rerun_waits_its_turn``).
RERUN_DAGS = ("chain", "diamond", "fanout", "serial", "pair")


class _Switch:
    """An on/off setting several actions may hold at once (a DAG's pause, maintenance mode):
    on while any holds it. Each change proposes the state wanted *when it is proposed*, so
    whatever a failover reorders, the last command committed is the last state wanted."""

    def __init__(self, world: World, name: str, make: Callable[[bool], c.Command]) -> None:
        self._world = world
        self._name = name
        self._make = make
        self.holders = 0

    def hold(self, delta: int) -> None:
        before = self.holders > 0
        self.holders += delta
        if (self.holders > 0) != before:
            self._world.note(f"{self._name} {'on' if self.holders > 0 else 'off'} (proposed)")
            self._world.spawn(self._world.propose(lambda: self._make(self.holders > 0)))


class UserActions:
    def __init__(self, world: World, rng: random.Random) -> None:
        self.world = world
        self.rng = rng
        self._paused: dict[str, _Switch] = {}
        self.maintenance = _Switch(
            world, "maintenance", lambda on: c.SetMaintenance(at_ms=world.clock_ms(), enabled=on, by="sim")
        )

    def schedule(self, t0: float, window_s: float, every_s: float) -> None:
        """Random actions, one every ``every_s`` on average, none in the window's last 6 s
        (so that every pause and maintenance window ends with it)."""
        loop = self.world.loop
        at = t0 + self.rng.expovariate(1 / every_s)
        while at < t0 + window_s - 6.0:
            loop.call_at(at, functools.partial(self.act, self.rng.choice(KINDS)))
            at += self.rng.expovariate(1 / every_s)

    def act(self, kind: str) -> None:
        getattr(self, f"_{kind}")()

    def _pause(self, dag: str) -> _Switch:
        if dag not in self._paused:
            w = self.world
            self._paused[dag] = _Switch(
                w, f"DAG {dag} paused", lambda on: c.SetDagPaused(at_ms=w.clock_ms(), dag_id=dag, paused=on)
            )
        return self._paused[dag]

    def _hold(self, switch: _Switch, span: float, what: str) -> None:
        """Hold ``switch`` for ``span`` s; half the time let go of it for a few ms midway (a
        double click, a script toggling it): the pass the release starts meets the new hold."""
        rng, loop = self.rng, self.world.loop
        switch.hold(+1)
        loop.call_later(span, switch.hold, -1)
        if rng.random() < 0.5:
            mid, gap = rng.uniform(0.1, span - 0.1), rng.uniform(0.002, 0.06)
            self.world.record(f"{what} for {span:.1f}s, off for {gap * 1000:.0f}ms after {mid:.1f}s")
            loop.call_later(mid, switch.hold, -1)
            loop.call_later(mid + gap, switch.hold, +1)
        else:
            self.world.record(f"{what} for {span:.1f}s")

    def _pause_dag(self) -> None:
        dag = self.rng.choice(self.world.dag_names)
        self._hold(self._pause(dag), self.rng.uniform(0.3, 6.0), f"pause DAG {dag}")

    def _maintenance(self) -> None:
        self._hold(self.maintenance, self.rng.uniform(0.3, 6.0), "maintenance mode")

    def _burst(self) -> None:
        """Trigger 2-4 runs of one DAG at once; half the time, pause it a moment later (while
        the leader is still offering them)."""
        rng, w = self.rng, self.world
        dag = rng.choice(w.dag_names)
        n = rng.randint(2, 4)
        w.expected_runs += n
        w.record(f"trigger {n} runs of {dag} at once")
        for _ in range(n):
            w.start_trigger(dag)
        if rng.random() < 0.5:
            w.loop.call_later(
                rng.uniform(0.0, 0.04),
                self._hold,
                self._pause(dag),
                rng.uniform(0.3, 5.0),
                f"pause DAG {dag}",
            )

    def _rerun_run(self, dags: tuple[str, ...] = RERUN_DAGS) -> None:
        w = self.world
        leader = w.leader()
        ended = (
            []
            if leader is None
            else [
                h
                for h in leader.reader.run_headers_newest()
                if h["state"] in TERMINAL_RUN_STATES and h["dagId"] in dags
            ]
        )
        if not ended:
            w.record("rerun_run: no run has ended")
            return
        run = self.rng.choice(sorted(ended, key=lambda h: str(h["runId"])))
        self.rerun(run["runId"])

    def _rerun_limited(self) -> None:
        self._rerun_run(("serial", "pair"))

    def rerun(self, run_id: str) -> None:
        """Re-run every task of ``run_id`` (refused, and left so, if it has not ended)."""
        self.world.record(f"rerun {run_id}")
        self.world.spawn(
            self._ask(
                lambda: c.RerunRun(
                    at_ms=self.world.clock_ms(),
                    run_id=run_id,
                    only_failed=False,
                    by="sim",
                    queued=True,
                    fresh_sla=True,
                    dag_must_exist=True,
                )
            )
        )

    async def _ask(self, make: Callable[[], c.Command]) -> None:
        """Propose through whoever leads until one answers; a refusal is final."""
        w = self.world
        while True:
            m = w.leader()
            if m is not None:
                try:
                    await m.log.propose(make())
                    return
                except (Conflict, NotFound, InvalidInput) as e:
                    w.note(f"refused: {e}")
                    return
                except KiokError as e:
                    w.note(f"not acknowledged: {e}")
            await asyncio.sleep(0.25)

    def _refuse_offers(self) -> None:
        w = self.world
        alive = [x for x in w.workers if x.alive]
        if not alive:
            return
        worker = self.rng.choice(alive)
        span = self.rng.uniform(0.3, 6.0)
        w.record(f"{worker.id} refuses every offer for {span:.1f}s")
        worker.refusing_until = max(worker.refusing_until, w.loop.time() + span)
