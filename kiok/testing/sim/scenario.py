"""What a simulated world is asked to do and what it reports: the DAGs it may trigger, the
``Scenario`` a seed is run with, and the ``Outcome`` with the command that replays it. Plain
data only: running a world is ``world``'s job."""

from __future__ import annotations

from dataclasses import dataclass, field

from kiok.testing.sim.workers import Execution, TaskPlan

#: The DAGs a world registers, by name (``Scenario.dags`` picks the ones it triggers).
DAGS = {
    "chain": """
dag: {id: chain}
tasks:
  - {id: a, type: shell, script: "true"}
  - {id: b, type: shell, script: "true", requires: [a]}
  - {id: c, type: shell, script: "true", requires: [b]}
  - {id: d, type: shell, script: "true", requires: [c]}
""",
    "diamond": """
dag: {id: diamond}
tasks:
  - {id: a, type: shell, script: "true"}
  - {id: b, type: shell, script: "true", requires: [a]}
  - {id: c, type: shell, script: "true", requires: [a], retries: 2, retry_delay: 1s}
  - {id: d, type: shell, script: "true", requires: [b, c], trigger_rule: all_done}
""",
    "fanout": """
dag: {id: fanout}
tasks:
  - {id: start, type: shell, script: "true"}
"""
    + "".join(f'  - {{id: t{i}, type: shell, script: "true", requires: [start]}}\n' for i in range(6))
    + '  - {id: end, type: shell, script: "true", requires: ['
    + ", ".join(f"t{i}" for i in range(6))
    + "], trigger_rule: all_done}\n",
    # Only in worlds with user actions (``Scenario.actions_every_s``): runs queue behind these.
    "serial": """
dag: {id: serial, max_active_runs: 1}
tasks:
  - {id: a, type: shell, script: "true"}
  - {id: b, type: shell, script: "true", requires: [a], retries: 1, retry_delay: 1s}
""",
    "pair": """
dag: {id: pair, max_active_runs: 2}
tasks:
  - {id: a, type: shell, script: "true"}
  - {id: b, type: shell, script: "true", requires: [a]}
  - {id: c, type: shell, script: "true", requires: [a]}
""",
}
#: The DAGs of worlds without user actions (as they were before ``serial`` and ``pair``).
CLASSIC_DAGS = ("chain", "diamond", "fanout")


@dataclass(frozen=True)
class Scenario:
    """The shape of one world; with ``seed``, it decides everything the world does."""

    seed: int
    masters: int = 3
    workers: int = 3
    runs: int = 12
    #: Faults and triggers happen within this window (virtual seconds) ...
    window_s: float = 40.0
    #: ... one fault every this many seconds on average (0: none).
    fault_every_s: float = 3.0
    #: After the window, how long the world may take to finish every run.
    settle_s: float = 240.0
    plan: TaskPlan = field(default_factory=TaskPlan)
    #: Explicit faults, (seconds after the start, kind) — instead of random ones.
    faults: tuple[tuple[float, str], ...] | None = None
    #: Which DAGs are triggered (all those registered by default).
    dags: tuple[str, ...] = ()
    #: One user action (``users.KINDS``: pause, maintenance, re-run, burst, refusing worker)
    #: every this many seconds on average; 0: none, and the worlds are as they were before
    #: actions existed (only ``CLASSIC_DAGS`` registered, no extra draw from the seed).
    actions_every_s: float = 0.0


@dataclass
class Outcome:
    """What one world did and which invariants it broke; ``replay_command`` runs it again."""

    scenario: Scenario
    violations: list[str]
    faults: list[str]
    runs: int
    execution_count: int
    virtual_s: float
    trace: list[str]
    executions: list[Execution]

    @property
    def ok(self) -> bool:
        return not self.violations

    def replay_command(self) -> str:
        sc = self.scenario
        extra = f" --runs {sc.runs} --window {sc.window_s:g}" if (sc.runs, sc.window_s) != (12, 40.0) else ""
        if sc.actions_every_s > 0:
            extra += f" --actions {sc.actions_every_s:g}"
        return f"PYTHONHASHSEED=0 python -m kiok.testing.sim --seed {sc.seed}{extra} -v"
