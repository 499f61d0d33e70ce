"""The grid's column cache (``kiok.master.grid_columns``) over the real ``apply()``: the run
view state machine's commands (create, assign, reports, cancel, re-run, delete, the clock)
drive the runs; after every step each run's column from the cache equals one built from the
store without a cache. Finished runs are answered from the cache until they change."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant

from kiok.core.states import TaskState
from kiok.dag.load import compiled_spec
from kiok.master.grid_columns import GridColumns, column
from kiok.store import commands as c
from kiok.store.commandlog import apply_batch
from tests.unit.test_run_views import TASKS, RunViewMachine

ORDER = list(TASKS)


class GridColumnMachine(RunViewMachine):
    columns: GridColumns | None = None

    def apply(self, cmds: list[c.Command]) -> None:
        applied = apply_batch(self.kv, cmds)
        self.kv.write(applied.writes, sync=False)
        self.views.on_effects(applied.effects)
        if self.columns is None:  # the first commands run in the base class's __init__
            self.columns = GridColumns(
                self.reader, lambda run_id: compiled_spec(self.reader.run_spec(run_id)), lambda: self.now
            )
        self.columns.on_effects(applied.effects)

    def encoded(self, i: int) -> dict[str, object] | None:
        header = self.header(i)
        assert self.columns is not None
        body = None if header is None else self.columns.encoded(header, ORDER)
        return None if body is None else dict(json.loads(body))

    @invariant()
    def every_column_is_the_truth(self) -> None:
        assert self.columns is not None
        for run_id in self.runs:
            header = self.reader.run_header(run_id)
            if header is None:
                continue
            run = self.reader.run(run_id)
            assert run is not None
            truth = column(run, compiled_spec(self.reader.run_spec(run_id)), ORDER, self.now)
            body = self.columns.encoded(header, ORDER)
            assert body is not None and json.loads(body) == truth


TestGridColumnMachine = GridColumnMachine.TestCase
TestGridColumnMachine.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
)


def test_a_finished_column_is_kept_until_a_rerun_and_dropped_on_delete() -> None:
    m = GridColumnMachine()
    cols = m.columns
    assert cols is not None
    m.report(0, ["a", "c", "e"], TaskState.SUCCESS, 1, False)
    running = m.encoded(0)
    assert running is not None and running["state"] == "RUNNING"
    assert m.encoded(0) is not None and cols.hits == 0 and len(cols) == 0  # unfinished: built each time
    m.cancel(0)
    m.release(0)
    first = m.encoded(0)
    assert first is not None and first["state"] == "CANCELLED" and len(cols) == 1
    builds = cols.builds
    m.clock(10)
    assert m.encoded(0) == first and cols.hits == 1 and cols.builds == builds
    m.rerun(0, False)  # a new version: built again, not served from the cache
    again = m.encoded(0)
    assert again is not None and again["state"] == "RUNNING" and cols.builds == builds + 1
    assert len(cols) == 0
    m.cancel(0)
    m.release(0)
    assert m.encoded(0) is not None and len(cols) == 1
    m.delete(0)  # the command log's effects drop it
    assert m.header(0) is None and len(cols) == 0
