"""Which worker log batches a master takes: only those of a run's current driver, under the
run's current fence, while the run has not finished (``kiok.store.apply_runs.driver_holds``).
A worker's credential says who it is, not which runs are its own.

The check is on the hot path (every batch of every task's output), so the current driver of
each run that sent logs lately is remembered; the committed state is read again only when a
batch names another fence, or after the run's fence changed or it finished (the command log's
effects say so). With several masters the same check is repeated when the batch is applied
(``AppendLogs``), which settles a reassignment that commits between receipt and apply.
"""

from __future__ import annotations

from kiok.store.apply_runs import driver_holds
from kiok.store.effects import Effects
from kiok.store.reader import StateReader

#: Runs whose driver is remembered; past this the oldest is forgotten (and read again if needed).
_REMEMBERED = 4096


class LogGate:
    def __init__(self, reader: StateReader) -> None:
        self._reader = reader
        self._drivers: dict[str, tuple[str, int, int]] = {}  # run id -> (worker, term, epoch)

    def admits(self, run_id: str, worker: str, term: int, epoch: int) -> bool:
        """True when ``worker`` drives ``run_id`` under (term, epoch) in this node's committed
        state. Never raises; costs a dict lookup for a driver seen before."""
        claim = (worker, term, epoch)
        if self._drivers.get(run_id) == claim:
            return True
        if not driver_holds(self._reader.run_header(run_id), worker, term, epoch):
            return False
        if run_id not in self._drivers and len(self._drivers) >= _REMEMBERED:
            del self._drivers[next(iter(self._drivers))]
        self._drivers[run_id] = claim
        return True

    def on_effects(self, fx: Effects) -> None:
        """Forget the drivers of runs that were reassigned, released or finished."""
        for run_id in fx.fences_changed:
            self._drivers.pop(run_id, None)
        for run_id in fx.runs_finished:
            self._drivers.pop(run_id, None)

    def clear(self) -> None:
        """Forget everything (leadership changed: the state may have moved under us)."""
        self._drivers.clear()
