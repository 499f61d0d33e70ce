"""Compaction on the real RocksDB store: deleting runs (as retention does) and compacting
gives the disk space back, and leaves no tombstones for a list to step over."""

from __future__ import annotations

from pathlib import Path

from kiok.core.states import TaskRecord, TaskState
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import apply_batch
from kiok.store.kv import RocksKV
from kiok.store.reader import RunQuery, StateReader

SPEC = {
    "dag": {"id": "d", "max_active_runs": 10_000},
    "tasks": [{"id": "a", "script": "x"}, {"id": "b", "script": "x", "requires": ["a"]}],
}
RUNS = 3000


def apply(kv: RocksKV, cmds: list[c.Command]) -> list[object]:
    applied = apply_batch(kv, cmds)
    assert all(e is None for _, e in applied.outcomes), applied.outcomes
    kv.write(applied.writes, sync=False)
    return [r for r, _ in applied.outcomes]


def sst_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("*.sst"))


def test_deleted_runs_leave_the_disk_after_compaction(tmp_path: Path) -> None:
    kv = RocksKV(tmp_path / "state", keys.SPACES)
    try:
        apply(kv, [c.RegisterDag(at_ms=1, spec=SPEC)])
        ids: list[str] = []
        for base in range(0, RUNS, 250):
            created = apply(kv, [c.CreateRun(at_ms=10 + i, dag_id="d") for i in range(base, base + 250)])
            run_ids = [r["runId"] for r in created]  # type: ignore[index]
            done = TaskRecord(state=TaskState.SUCCESS, attempt=1, worker="w", started_at_ms=1, ended_at_ms=2)
            fences = apply(
                kv, [c.AssignRun(at_ms=5000, run_id=run_id, worker="w", term=1) for run_id in run_ids]
            )
            tasks = {"a": done.to_dict(), "b": done.to_dict()}
            apply(
                kv,
                [
                    c.ReportTasks(at_ms=5001, run_id=run_id, term=1, epoch=epoch, tasks=tasks, worker="w")
                    for run_id, epoch in zip(run_ids, [f["epoch"] for f in fences], strict=True)  # type: ignore[index]
                ],
            )
            ids += run_ids
        kv.compact()
        full = sst_bytes(tmp_path / "state")
        reader = StateReader(kv)
        assert len(reader.run_page(RunQuery(state="SUCCESS"), limit=RUNS)[0]) == RUNS

        for base in range(0, RUNS, 500):
            apply(kv, [c.DeleteRuns(at_ms=9000, run_ids=tuple(ids[base : base + 500]))])
        kv.compact()
        left = sst_bytes(tmp_path / "state")
        assert left < full / 10, (full, left)
        assert reader.run_page(RunQuery(), limit=10) == ([], None)
        assert list(kv.scan(keys.META, b"staterun/")) == []
    finally:
        kv.close()
