"""Which attempt user each attempt gets (``kiok.worker.attempt_users``): one no running attempt
has, in turn, handed to waiters in order, never lost to a cancellation."""

from __future__ import annotations

import asyncio

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
