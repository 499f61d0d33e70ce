"""Which attempt user each attempt gets (``kiok.worker.attempt_users``): one no running attempt
has, in turn, handed to waiters in order, never lost to a cancellation."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from kiok.worker.attempt_users import AttemptUser, AttemptUsers

USERS = [("kiok-task-1", 1001), ("kiok-task-2", 1002)]


async def test_users_go_in_turn_and_the_one_given_back_goes_last() -> None:
    pool = AttemptUsers(USERS)
    first, second = await pool.take(), await pool.take()
    assert (first.uid, second.uid) == (1001, 1002)
    pool.give_back(first)
    pool.give_back(second)
    assert [(await pool.take()).uid for _ in range(2)] == [1001, 1002]


async def test_a_waiter_gets_the_next_user_given_back_before_a_later_taker() -> None:
    pool = AttemptUsers(USERS[:1])
    held = await pool.take()
    waiting = asyncio.ensure_future(pool.take())
    await asyncio.sleep(0)
    pool.give_back(held)
    later = asyncio.ensure_future(pool.take())  # comes after: it must not overtake
    assert await waiting == held
    await asyncio.sleep(0)
    assert not later.done()
    pool.give_back(held)
    assert await later == held


async def test_a_cancelled_waiter_loses_no_user() -> None:
    pool = AttemptUsers(USERS[:1])
    held = await pool.take()
    gone, next_one = asyncio.ensure_future(pool.take()), asyncio.ensure_future(pool.take())
    await asyncio.sleep(0)
    gone.cancel()  # cancelled while waiting
    pool.give_back(held)
    assert await next_one == held
    handed = asyncio.ensure_future(pool.take())
    await asyncio.sleep(0)
    pool.give_back(held)  # handed to it, and it is cancelled before it runs
    handed.cancel()
    await asyncio.gather(handed, return_exceptions=True)
    assert await asyncio.wait_for(pool.take(), 1) == AttemptUser("kiok-task-1", 1001)


#: Run as root in a process of its own: the spawner's way of switching users, checked.
SWITCHING = """
import os
from kiok.worker.attempt_ids import AttemptIds
ids = AttemptIds.parse("54320:54320:54321,54322")
os.setgroups([]); os.setresgid(54320, 54320, 54320); os.setresuid(54320, 54320, 0)
rest = (54320, 54320, 0)
with ids.acting_as(54321):
    assert os.getresuid() == (54320, 54321, 0), os.getresuid()
    ids.switch(0)
    assert os.geteuid() == 0
    ids.switch(54322)
    assert os.geteuid() == 54322
assert os.getresuid() == rest
try:
    with ids.acting_as(0, real=54321):
        assert os.getresuid() == (54321, 0, 0), os.getresuid()
        raise KeyError("inside")
except KeyError:
    pass
assert os.getresuid() == rest, os.getresuid()
with ids.acting_as(0):
    try:
        with ids.acting_as(0):
            raise AssertionError("nested")
    except RuntimeError:
        pass
assert os.getresuid() == rest
try:
    ids.check(0)
except PermissionError:
    print("switched")
"""


def test_the_spawner_is_back_as_its_own_user_after_every_switch() -> None:
    done = subprocess.run([sys.executable, "-c", SWITCHING], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "switched\n", done.stderr
