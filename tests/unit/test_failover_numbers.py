"""Issue 14, the store's half: a run taken from a driver that did not give it back never
hands out an attempt number that driver may have used unreported, and a worker's log batch
sent again (after a reconnect or a leader failover) is stored once."""

from __future__ import annotations

from kiok.core.states import TaskRecord, TaskState
from kiok.store import commands as c
from kiok.store import joblog, keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.joblog import JobLogStore
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader

SPEC = {
    "dag": {"id": "d", "max_active_runs": 4},
    "tasks": [
        {"id": "a", "script": "x"},
        {"id": "b", "script": "x", "requires": ["a"]},
        {"id": "c", "script": "x", "requires": ["b"]},
        {"id": "r", "script": "x"},
    ],
}


async def test_a_reassigned_run_passes_every_attempt_the_old_driver_could_have_started() -> None:
    kv = MemoryKV(keys.SPACES)
    log, reader = LocalCommandLog(kv), StateReader(kv)
    await log.propose(c.RegisterDag(at_ms=1, spec=SPEC))
    run_id = (await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"]
    await log.propose(c.AssignRun(at_ms=3, run_id=run_id, worker="w1", term=1))
    tasks = {
        "a": TaskRecord(state=TaskState.SUCCESS, attempt=1, worker="w1").to_dict(),
        "r": TaskRecord(state=TaskState.RUNNING, attempt=1, worker="w1").to_dict(),
    }
    await log.propose(c.ReportTasks(at_ms=4, run_id=run_id, term=1, epoch=1, tasks=tasks, worker="w1"))
    # w1 is lost. It may have started b (ready: a succeeded) as attempt 1 without the start
    # reaching us; c was not ready; r was known to run attempt 1.
    await log.propose(c.AssignRun(at_ms=5, run_id=run_id, worker="w2", term=1))
    run = reader.run(run_id)
    assert run is not None
    view = {t: (r["state"], r["attempt"]) for t, r in run["tasks"].items()}
    assert view == {"a": ("SUCCESS", 1), "b": ("QUEUED", 1), "c": ("PENDING", 0), "r": ("QUEUED", 1)}
    # The next START of b is attempt 2, of r attempt 2: neither reuses a number.
    assert "may have started" in run["tasks"]["b"]["error"]


async def test_a_run_given_back_keeps_its_numbers() -> None:
    kv = MemoryKV(keys.SPACES)
    log, reader = LocalCommandLog(kv), StateReader(kv)
    await log.propose(c.RegisterDag(at_ms=1, spec=SPEC))
    run_id = (await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"]
    await log.propose(c.AssignRun(at_ms=3, run_id=run_id, worker="w1", term=1))
    await log.propose(c.ReleaseRun(at_ms=4, run_id=run_id, epoch=1, reason="drain", worker="w1"))
    await log.propose(c.AssignRun(at_ms=5, run_id=run_id, worker="w2", term=1))
    run = reader.run(run_id)
    assert run is not None
    assert {t: r["attempt"] for t, r in run["tasks"].items()} == {"a": 0, "b": 0, "c": 0, "r": 0}


def test_a_worker_batch_sent_twice_is_stored_once() -> None:
    logs = JobLogStore(MemoryKV(list(joblog.SPACES)))
    logs.append("r", "t", b"master line\n")  # the master's own lines have no stream
    logs.append("r", "t", b"abc", stream=(2, 1, 0))
    logs.append("r", "t", b"abc", stream=(2, 1, 0))  # replayed
    logs.append("r", "t", b"bcde", stream=(2, 1, 1))  # overlaps: only "de" is new
    logs.apply_replicated(7, [("r", "t", b"de", (2, 1, 3)), ("r", "t", b"f\n", (2, 1, 5))])
    logs.append("r", "t", b"new driver\n", stream=(2, 2, 0))  # another fence: a new stream
    logs.append("r", "t", b"new driver\n", stream=(2, 2, 0))
    assert logs.read("r", "t", 0)[0] == b"master line\nabcdef\nnew driver\n"
    assert logs.read("r", "u", 0)[0] == b""


def test_replicas_agree_on_what_a_replay_adds() -> None:
    chunks: list[tuple[str, str, bytes, tuple[int, int, int] | None]] = [
        ("r", "t", b"one\n", (1, 1, 0)),
        ("r", "__run__", b"assigned\n", None),
        ("r", "t", b"one\n", (1, 1, 0)),
        ("r", "t", b"two\n", (1, 1, 4)),
    ]
    stores = [JobLogStore(MemoryKV(list(joblog.SPACES))) for _ in range(2)]
    for store in stores:
        for i, chunk in enumerate(chunks, start=1):
            store.apply_replicated(i, [chunk])
    assert {store.read("r", "t", 0)[0] for store in stores} == {b"one\ntwo\n"}
