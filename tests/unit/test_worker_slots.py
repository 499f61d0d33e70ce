"""TaskSlots: the worker's slots, handed to waiting drivers in turn."""

from __future__ import annotations

import pytest

from kiok.worker.slots import TaskSlots


class Driver:
    """A driver with ``queued`` tasks that takes slots the way RunDriver._pump does."""

    def __init__(self, name: str, slots: TaskSlots, queued: int, started: list[str]) -> None:
        self.name, self.slots, self.queued, self.started = name, slots, queued, started

    def pump(self) -> None:
        while self.queued:
            if not self.slots.try_take():
                self.slots.wait(self.pump)
                return
            self.queued -= 1
            self.started.append(self.name)


def test_take_until_none_is_free_then_release() -> None:
    slots = TaskSlots(2)
    assert slots.try_take() and slots.try_take()
    assert not slots.try_take()
    assert (slots.busy, slots.free) == (2, 0)
    slots.release()
    assert (slots.busy, slots.free) == (1, 1)


def test_freed_slots_go_to_waiting_runs_in_turn() -> None:
    slots = TaskSlots(2)
    started: list[str] = []
    a, b = Driver("a", slots, 5, started), Driver("b", slots, 2, started)
    a.pump()
    b.pump()
    assert started == ["a", "a"]  # a took both slots; a (3 more) then b (2) wait in line
    for _ in range(5):
        slots.release()
    # Each freed slot went to the first in line, and a run with more to start lined up again
    # behind the others: the runs alternate instead of a's whole queue going first.
    assert started == ["a", "a", "a", "b", "a", "b", "a"]


def test_waiting_twice_keeps_one_place_and_leave_gives_it_up() -> None:
    slots = TaskSlots(1)
    assert slots.try_take()
    calls: list[str] = []

    def first() -> None:
        calls.append("first")

    def second() -> None:
        calls.append("second")
        assert slots.try_take()

    slots.wait(first)
    slots.wait(second)
    slots.wait(first)
    slots.leave(first)
    slots.release()
    assert calls == ["second"]


def test_a_called_driver_that_takes_nothing_passes_the_slot_on() -> None:
    slots = TaskSlots(1)
    assert slots.try_take()
    started: list[str] = []
    done = Driver("done", slots, 0, started)  # its queued tasks were cancelled meanwhile
    slots.wait(done.pump)
    waiting = Driver("waiting", slots, 1, started)
    waiting.pump()
    slots.release()
    assert started == ["waiting"] and slots.free == 0


def test_releasing_a_slot_never_taken_is_a_bug() -> None:
    slots = TaskSlots(1)
    with pytest.raises(RuntimeError, match="never taken"):
        slots.release()
    with pytest.raises(ValueError, match="at least one"):
        TaskSlots(0)
