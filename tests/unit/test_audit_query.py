"""Filtering the audit log in the store: by actor, action (exact or a prefix), outcome and
time; the scan stops at the first record older than ``since``, and a filtered page reads a
bounded number of records, continuing from where it stopped."""

from __future__ import annotations

from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.kv import MemoryKV
from kiok.store.reader import AuditQuery, StateReader


async def filled() -> StateReader:
    kv = MemoryKV(keys.SPACES)
    log = LocalCommandLog(kv)
    rows = [
        (1000, "admin", "auth:Login", True),
        (2000, "bob", "auth:Login", False),
        (3000, "admin", "iam:Write", True),
        (4000, "admin", "iam:CreateAccessKey", True),
        (5000, "bob", "auth:Login", True),
        (6000, "admin", "connections:Write", True),
    ]
    for at, actor, action, ok in rows:
        await log.propose(c.AppendAudit(at_ms=at, actor=actor, action=action, target="t", success=ok))
    return StateReader(kv)


def times(page: list[dict[str, object]]) -> list[object]:
    return [e["atMs"] for e in page]


async def test_each_filter_and_their_combination() -> None:
    reader = await filled()
    assert times(reader.audit(query=AuditQuery(actor="bob"))[0]) == [5000, 2000]
    assert times(reader.audit(query=AuditQuery(action="auth:Login"))[0]) == [5000, 2000, 1000]
    assert times(reader.audit(query=AuditQuery(action="iam:*"))[0]) == [4000, 3000]
    assert times(reader.audit(query=AuditQuery(success=False))[0]) == [2000]
    assert times(reader.audit(query=AuditQuery(since_ms=3000, until_ms=5000))[0]) == [4000, 3000]
    both = AuditQuery(actor="bob", action="auth:Login", success=True)
    assert times(reader.audit(query=both)[0]) == [5000]


async def test_pages_of_a_filtered_list_follow_each_other() -> None:
    reader = await filled()
    first, cursor = reader.audit(limit=1, query=AuditQuery(actor="admin"))
    assert times(first) == [6000] and cursor is not None
    second, cursor = reader.audit(limit=2, cursor=cursor, query=AuditQuery(actor="admin"))
    assert times(second) == [4000, 3000] and cursor is not None
    third, cursor = reader.audit(limit=2, cursor=cursor, query=AuditQuery(actor="admin"))
    assert times(third) == [1000] and cursor is None


async def test_a_bounded_scan_returns_a_short_page_that_continues() -> None:
    reader = await filled()
    page, cursor = reader.audit(limit=10, query=AuditQuery(actor="bob"), scan_limit=3)
    # Records 6000, 5000, 4000 were read: one match, and the cursor continues after 4000.
    assert times(page) == [5000] and cursor is not None
    page, cursor = reader.audit(limit=10, cursor=cursor, query=AuditQuery(actor="bob"), scan_limit=2)
    # 3000 and 2000 read (one match); 1000 is left for the next page, which has no match.
    assert times(page) == [2000] and cursor is not None
    page, cursor = reader.audit(limit=10, cursor=cursor, query=AuditQuery(actor="bob"), scan_limit=2)
    assert page == [] and cursor is None


async def test_the_scan_stops_at_the_first_record_older_than_since() -> None:
    reader = await filled()
    page, cursor = reader.audit(limit=10, query=AuditQuery(since_ms=4500), scan_limit=100)
    assert times(page) == [6000, 5000] and cursor is None
