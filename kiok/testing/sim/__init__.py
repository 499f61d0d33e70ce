"""A deterministic simulator of a kiok cluster (issue: failover without loss, stall or
duplicate): one seed gives one schedule of runs, faults and delays, run by kiok's own
master and worker code over an in-memory network on virtual time, and checked against the
invariants of docs/cluster.md. ``python -m kiok.testing.sim --seeds 0-999`` runs many;
a failing seed prints the command that replays it."""

from kiok.testing.sim.scenario import Outcome, Scenario
from kiok.testing.sim.world import simulate

__all__ = ["Outcome", "Scenario", "simulate"]
