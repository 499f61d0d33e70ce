"""A filtered list reads a bounded number of records per request, whatever the history holds.

Attack: a user who may list the runs of one DAG asks for the runs of another (or for every
run) on a master with a long history. Every run is read and left out by the policy, so one
request read the whole history on the event loop (200,000 runs: 5 s per request, the
scheduler, Raft and the worker links stalled meanwhile). Now a page reads at most
``scan_limit`` runs: short (maybe empty) pages with a cursor that continues after the last
run read, so paging still reaches every visible run.
"""

from __future__ import annotations

from typing import Any

from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import apply_batch
from kiok.store.kv import MemoryKV
from kiok.store.reader import RunQuery, StateReader


def spec(dag_id: str) -> dict[str, Any]:
    return {"dag": {"id": dag_id, "max_active_runs": 1000}, "tasks": [{"id": "a", "script": "x"}]}


def history(mine: int, other: int) -> tuple[StateReader, list[str]]:
    """``mine`` runs of DAG ``mine``, then ``other`` runs of DAG ``other`` (newer)."""
    kv = MemoryKV(keys.SPACES)
    cmds: list[c.Command] = [c.RegisterDag(at_ms=1, spec=spec(d)) for d in ("mine", "other")]
    cmds += [c.CreateRun(at_ms=10 + i, dag_id="mine") for i in range(mine)]
    cmds += [c.CreateRun(at_ms=10 + mine + i, dag_id="other") for i in range(other)]
    applied = apply_batch(kv, cmds)
    kv.write(applied.writes, sync=False)
    mine_ids = [
        r["runId"] for r, _ in applied.outcomes if isinstance(r, dict) and "mine-" in r.get("runId", "")
    ]
    return StateReader(kv), mine_ids[::-1]


def test_a_page_of_runs_the_caller_cannot_see_reads_at_most_the_scan_limit() -> None:
    reader, _ = history(mine=3, other=50)
    seen: list[str] = []

    def visible(header: dict[str, Any]) -> bool:
        seen.append(header["runId"])
        return bool(header["dagId"] == "mine")

    for query in (RunQuery(), RunQuery(dag_id="other")):
        seen.clear()
        page, cursor = reader.run_page(query, limit=10, visible=visible, scan_limit=20)
        assert page == [] and cursor is not None
        assert len(seen) == 20


def test_short_pages_still_reach_every_visible_run_in_order() -> None:
    reader, mine = history(mine=5, other=47)
    got: list[str] = []
    cursor: int | None = None
    pages = 0
    while True:
        page, cursor = reader.run_page(
            RunQuery(), limit=2, cursor=cursor, visible=lambda h: h["dagId"] == "mine", scan_limit=10
        )
        got += [h["runId"] for h in page]
        pages += 1
        if cursor is None:
            break
    assert got == mine
    assert pages <= 8


def test_without_a_filter_the_scan_limit_changes_nothing() -> None:
    reader, _ = history(mine=0, other=30)
    page, cursor = reader.run_page(RunQuery(), limit=25, scan_limit=10)
    assert len(page) == 25 and cursor is not None
