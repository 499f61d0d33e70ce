"""A task's ``attemptBase`` (where a re-run's retries count from) is the master's: set by a
re-run, never by a driver's report. A report that drops it (an older worker does not know
the field) or moves it (a driver that sends a large base would make ``attempt - base``
negative: retries for ever) leaves the stored base as it was."""

from __future__ import annotations

from kiok.core.states import TaskRecord
from kiok.master.coordinator import Coordinator
from tests.unit.test_coordinator_cancel_resend import _drive_a, _world, report


async def test_a_report_neither_moves_nor_drops_the_attempt_base() -> None:
    log, reader, run = await _world()
    coord = Coordinator(log, reader, lambda *a: None, lambda: 1000, term=1)
    log.subscribe(coord.on_effects)
    await _drive_a(log, reader, run, coord)  # task a RUNNING, attempt 1, base 0
    failed = {"state": "FAILED", "attempt": 1, "startedMs": 10, "endedMs": 20, "attemptBase": 99}
    await report(log, reader, run, 20, {"a": failed})
    stored = reader.task(run, "a")
    assert stored is not None and stored["state"] == "FAILED"  # the report itself is taken
    assert TaskRecord.from_dict(stored).attempt_base == 0
