"""A restore brings runs back to the fences they had when the backup was taken. A driver
given a run after that (a worker cut off while the restore ran, its frames delayed) holds a
later fence: no assignment after the restore may hand that fence out again, or its stale
reports and logs would be taken as the new driver's."""

from __future__ import annotations

from pathlib import Path

from kiok.store import backup as b
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.kv import RocksKV
from kiok.store.reader import StateReader
from tests.unit.test_store_compaction import apply

SPEC = {"dag": {"id": "d"}, "tasks": [{"id": "a", "script": "x"}]}


def _assign(kv: RocksKV, run_id: str, worker: str) -> int:
    (fence,) = apply(kv, [c.AssignRun(at_ms=2, run_id=run_id, worker=worker, term=1)])
    return int(fence["epoch"])  # type: ignore[index]


def test_no_fence_handed_out_after_a_backup_is_handed_out_again_after_its_restore(tmp_path: Path) -> None:
    kv = RocksKV(tmp_path / "state", keys.SPACES)
    try:
        state = b.StoreSource("state", kv, keys.SPACES, keep=keys.STATE_KEPT_BY_RESTORE)
        apply(kv, [c.RegisterDag(at_ms=1, spec=SPEC)])
        (created,) = apply(kv, [c.CreateRun(at_ms=1, dag_id="d")])
        run_id = created["runId"]  # type: ignore[index]
        at_backup = _assign(kv, run_id, "w1")
        backup = b.checkpoint([state], tmp_path / "backup")
        after_backup = [_assign(kv, run_id, "w2"), _assign(kv, run_id, "w2")]

        b.replace_contents(state, backup["state"])  # the restore
        header = StateReader(kv).run_header(run_id)
        assert header is not None and header["epoch"] == at_backup  # back to the backup's fence
        again = [_assign(kv, run_id, "w2") for _ in range(3)]
        assert min(again) > max(after_backup) > at_backup
    finally:
        kv.close()
