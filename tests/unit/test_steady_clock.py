"""A worker's clock follows the wall clock's rate but not its steps (``SteadyWallClock``)."""

from __future__ import annotations

from kiok.worker.steady_clock import SteadyWallClock


def test_a_wall_clock_step_does_not_move_the_workers_time() -> None:
    wall, mono = [1_700_000_000_000], [100.0]
    clock = SteadyWallClock(lambda: wall[0], lambda: mono[0])
    assert clock() == 1_700_000_000_000
    wall[0] -= 3_600_000  # NTP steps the host's clock an hour back
    mono[0] += 1.5
    assert clock() == 1_700_000_001_500  # a retry due in 1.5 s is due now, not in an hour


def test_a_new_clock_anchors_on_the_corrected_wall_clock() -> None:
    wall = [5_000]
    assert SteadyWallClock(lambda: wall[0], lambda: 0.0)() == 5_000
