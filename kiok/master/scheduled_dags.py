"""What the scheduler knows of each scheduled DAG, kept between its ticks.

The scheduler looks at every DAG every tick (each second). Reading a DAG's record decrypts
and decodes its whole spec and source, so with 500 DAGs of 50 tasks a tick cost ~80 ms of
the event loop, every second, for the half-dozen fields a tick needs. Those fields change
only with commands whose effects name the DAG: ``dags_changed`` (registered, paused or
unpaused, deleted) and ``schedules_moved`` (a fire moved its watermark), or with a restore;
so a DAG's record is read once and again only after such a batch. Effects arrive after the
write they describe, on the thread the scheduler runs on, so what is kept is never older
than the last change announced. The scheduler is made anew for each leadership term (and
after the state is replaced), so this starts empty and reads every DAG once per term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kiok.core.cron import next_fire_ms
from kiok.store.effects import Effects
from kiok.store.reader import StateReader


@dataclass(frozen=True)
class ScheduledDag:
    """An unpaused DAG with a schedule, as a tick needs it."""

    dag_id: str
    schedule: str
    tz: str
    catchup: bool
    watermark_ms: int
    #: The first fire time after the watermark: nothing is due before it, so a tick passes
    #: the DAG by until then. None when it cannot be worked out here (the tick says why).
    first_due_ms: int | None


def scheduled(record: dict[str, Any]) -> ScheduledDag | None:
    """``record``'s schedule; None for a paused or manual-only DAG (nothing to fire)."""
    dag = record["spec"]["dag"]
    if not dag.get("schedule") or record["paused"]:
        return None
    schedule, tz = dag["schedule"], dag.get("timezone", "UTC")
    watermark = int(record["watermarkMs"])
    try:
        first_due: int | None = next_fire_ms(schedule, tz, watermark)
    except Exception:  # a zone this master lacks, say: the tick evaluates it and logs why
        first_due = None
    return ScheduledDag(dag["id"], schedule, tz, bool(dag.get("catchup", False)), watermark, first_due)


class ScheduledDags:
    def __init__(self, reader: StateReader) -> None:
        self._reader = reader
        #: DAG id -> its schedule; None until first asked (then every DAG is read once).
        self._dags: dict[str, ScheduledDag] | None = None
        #: DAGs changed since last asked: read again then.
        self._stale: set[str] = set()

    def all(self) -> list[ScheduledDag]:
        """Every unpaused scheduled DAG, in id order, as the store holds it now."""
        if self._dags is None:
            found = (scheduled(record) for record in self._reader.dags())
            self._dags = {s.dag_id: s for s in found if s is not None}
            self._stale.clear()
        for dag_id in sorted(self._stale):
            record = self._reader.dag(dag_id)
            entry = None if record is None else scheduled(record)
            if entry is None:
                self._dags.pop(dag_id, None)
            else:
                self._dags[dag_id] = entry
        self._stale.clear()
        return [self._dags[dag_id] for dag_id in sorted(self._dags)]

    def on_effects(self, fx: Effects) -> None:
        if fx.restored is not None:
            self._dags = None
        self._stale.update(fx.dags_changed, fx.schedules_moved)
