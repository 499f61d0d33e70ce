"""The pending-runs quota's own bookkeeping: requests of one DAG overlapping in any order."""

from __future__ import annotations

from typing import Any, cast

import pytest

from kiok.errors import Conflict
from kiok.master.pending_quota import PendingQuota
from kiok.store.reader import StateReader


class _Pending:
    """A reader whose DAG has ``n`` pending runs."""

    def __init__(self, n: int) -> None:
        self.n = n

    def pending_runs(self, dag_id: str, at_most: int) -> int:
        return min(self.n, at_most)


def _quota(pending: int, limit: int) -> PendingQuota:
    return PendingQuota(cast(StateReader, cast(Any, _Pending(pending))), limit)


async def test_a_request_that_creates_nothing_overlapping_one_that_creates_runs() -> None:
    quota = _quota(0, 5)
    nothing = quota.admit("d", 0)  # a backfill whose intervals all have runs
    one = quota.admit("d", 1)  # a trigger
    await nothing.__aenter__()
    await one.__aenter__()
    await one.__aexit__(None, None, None)
    await nothing.__aexit__(None, None, None)  # a KeyError here was a 500 for a committed backfill


async def test_runs_being_created_count_until_they_are() -> None:
    quota = _quota(3, 5)
    async with quota.admit("d", 2):
        with pytest.raises(Conflict, match=r"max\.pending\.runs\.per\.dag"):
            async with quota.admit("d", 1):
                pass
        async with quota.admit("other", 2):  # counted per DAG
            pass
    async with quota.admit("d", 2):
        pass
