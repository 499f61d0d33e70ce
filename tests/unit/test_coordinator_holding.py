"""Which runs a driver holds, as the coordinator sees it: a run given back is reassigned at
once; a run its driver's heartbeats stop naming goes back to the pool; a run claimed by a
driver that reconnects while a dispatch pass is under way stays with that driver. (Each of
these was found by the cluster simulator, ``kiok.testing.sim``.)"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from typing import Any

from kiok.core.interruption import LOST_ERROR, REVOKED_ERROR, interrupted_attempt, interrupted_lines
from kiok.core.states import TaskRecord, TaskState
from kiok.dag.load import spec_from_yaml
from kiok.master.coordinator import Coordinator
from kiok.protocol.link import WorkerInfo
from kiok.protocol.messages import Assignment, Claim, Fence, OfferReply, OfferVerdict
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.joblog import SPACES as JOBLOG_SPACES
from kiok.store.joblog import JobLogStore
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader
from tests.worker_handles import NoClaims

DAG = 'dag: {id: d}\ntasks:\n  - {id: a, type: shell, script: "true"}\n'


class Worker(NoClaims):
    def __init__(self, wid: str, free: int = 4) -> None:
        self.id = wid
        self.free = free
        self.offers: list[Assignment] = []
        self.before_reply: asyncio.Event | None = None

    def info(self) -> WorkerInfo:
        return WorkerInfo(self.id, "-", (), 8, self.free, True, False, None)

    async def offer(self, assignment: Assignment, labels: Iterable[str]) -> OfferReply:
        self.offers.append(assignment)
        return OfferReply(OfferVerdict.ACK)

    def cancel(self, run_id: str, reason: str) -> None:
        pass


async def setup(*workers: Worker) -> tuple[Coordinator, LocalCommandLog, StateReader, list[str]]:
    kv = MemoryKV(keys.SPACES)
    log = LocalCommandLog(kv)
    reader = StateReader(kv)
    coord = Coordinator(log, reader, JobLogStore(MemoryKV(JOBLOG_SPACES)).append, lambda: 1000, term=1)
    log.subscribe(coord.on_effects)
    await log.propose(c.RegisterDag(at_ms=1, spec=spec_from_yaml(DAG).to_dict()))
    runs = [(await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"] for _ in range(2)]
    for w in workers:
        coord.add_worker(w)
    return coord, log, reader, runs


async def test_a_run_given_back_by_its_driver_is_assigned_again_at_once() -> None:
    w1 = Worker("w1")
    coord, log, reader, runs = await setup(w1)
    await coord.dispatch_pass()
    header = reader.run_header(runs[0])
    assert header is not None and header["worker"] == "w1"
    await log.propose(
        c.ReleaseRun(at_ms=3, run_id=runs[0], epoch=header["epoch"], reason="drain", worker="w1")
    )
    await coord.dispatch_pass()
    assert [a.run_id for a in w1.offers].count(runs[0]) == 2  # offered again, not held until w1 is lost


async def test_a_run_the_driver_stops_naming_goes_back_to_the_pool() -> None:
    w1 = Worker("w1")
    coord, _, reader, runs = await setup(w1)
    await coord.dispatch_pass()
    assert len(w1.offers) == 2
    # Each run's first assignment carries no task records (all unstarted: none are read),
    # whatever epoch the store-wide counter and the clock's floor gave it.
    floor = c.fence_floor(1000)
    assert [(a.fence.epoch, a.tasks) for a in w1.offers] == [(floor + 1, {}), (floor + 2, {})]
    coord.claims_seen("w1", set(runs))  # both held
    coord.claims_seen("w1", {runs[1]})  # the first one's driver is gone without a word
    await coord.dispatch_pass()
    assert [a.run_id for a in w1.offers] == [runs[0], runs[1], runs[0]]
    header = reader.run_header(runs[0])
    assert header is not None and header["epoch"] == w1.offers[2].fence.epoch > w1.offers[0].fence.epoch


async def test_a_run_not_yet_named_by_a_heartbeat_is_not_dropped() -> None:
    """A heartbeat sent before the offer arrived does not name the run: that is no sign."""
    w1 = Worker("w1")
    coord, *_ = await setup(w1)
    await coord.dispatch_pass()
    coord.claims_seen("w1", set())
    await coord.dispatch_pass()
    assert len(w1.offers) == 2


async def test_a_run_claimed_during_a_dispatch_pass_stays_with_its_driver() -> None:
    """A new leader's pass starts with the oldest run; while that one's offer is out, the
    previous driver of the others reconnects and claims them: the pass must not then give
    them to someone else."""
    kv = MemoryKV(keys.SPACES)
    log = LocalCommandLog(kv)
    reader = StateReader(kv)
    gpu = 'dag: {id: g, labels: [gpu]}\ntasks:\n  - {id: a, type: shell, script: "true"}\n'
    for text in (DAG, gpu):
        await log.propose(c.RegisterDag(at_ms=1, spec=spec_from_yaml(text).to_dict()))
    oldest = (await log.propose(c.CreateRun(at_ms=2, dag_id="g")))["runId"]  # needs a gpu worker
    runs = [(await log.propose(c.CreateRun(at_ms=3, dag_id="d")))["runId"] for _ in range(2)]
    old = Coordinator(log, reader, lambda *a: None, lambda: 1000, term=1)
    log.subscribe(old.on_effects)
    w1 = Worker("w1")
    old.add_worker(w1)
    await old.dispatch_pass()  # w1 drives the two plain runs under term 1
    held = {r: h for r in runs if (h := reader.run_header(r)) is not None and h["worker"] == "w1"}
    assert len(held) == 2

    new = Coordinator(log, reader, lambda *a: None, lambda: 2000, term=2, reattach_grace_ms=5000)
    log.subscribe(new.on_effects)

    class Gpu(Worker):
        def info(self) -> WorkerInfo:
            return WorkerInfo(self.id, "-", ("gpu",), 8, 8, True, False, None)

        async def offer(self, assignment: Assignment, labels: Iterable[str]) -> OfferReply:
            if not self.offers:  # while the first offer is out, w1 comes back and claims
                claims = [Claim(r, Fence(h["term"], h["epoch"])) for r, h in held.items()]
                assert new.reattach("w1", claims) == ()
                new.add_worker(Worker("w1"))
            return await super().offer(assignment, labels)

    w2 = Gpu("w2")
    new.add_worker(w2)
    await new.dispatch_pass()
    assert [a.run_id for a in w2.offers] == [oldest]
    for r in runs:
        header = reader.run_header(r)
        assert header is not None and header["worker"] == "w1" and header["term"] == 1, header


async def _driven_by_w1() -> tuple[LocalCommandLog, StateReader, str]:
    """One run, driven by w1 under term 1 (a leader's coordinator that then went)."""
    kv = MemoryKV(keys.SPACES)
    log = LocalCommandLog(kv)
    reader = StateReader(kv)
    await log.propose(c.RegisterDag(at_ms=1, spec=spec_from_yaml(DAG).to_dict()))
    run = (await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"]
    old = Coordinator(log, reader, lambda *a: None, lambda: 1000, term=1)
    log.subscribe(old.on_effects)
    old.add_worker(Worker("w1"))
    await old.dispatch_pass()
    return log, reader, run


async def test_a_wall_clock_step_neither_cuts_the_reconnect_grace_short_nor_stretches_it() -> None:
    """A new leader gives a run's previous driver the grace to reconnect. Measured on the
    wall clock, a step forward (NTP, a resumed VM) gave the runs of a live, reconnecting
    driver away (two drivers), and a step back held a dead driver's runs that much longer."""
    log, reader, run = await _driven_by_w1()

    wall, mono = [2_000], [50_000]
    new = Coordinator(
        log,
        reader,
        lambda *a: None,
        lambda: wall[0],
        term=2,
        reattach_grace_ms=5000,
        monotonic_ms=lambda: mono[0],
    )
    log.subscribe(new.on_effects)
    w2 = Worker("w2")
    new.add_worker(w2)
    wall[0] += 3_600_000  # the wall clock steps an hour forward: the grace is not over
    await new.dispatch_pass()
    assert w2.offers == [] and "reconnect" in new.waiting[run]
    wall[0] -= 7_200_000  # and an hour back: it ends when 5 s have passed all the same
    mono[0] += 5_000
    await new.dispatch_pass()
    assert [a.run_id for a in w2.offers] == [run]


async def test_a_refusing_worker_backs_off_on_the_monotonic_clock() -> None:
    """A NAK's back-off (500 ms after the first) is not made an hour long by a wall step."""

    class Refusing(Worker):
        async def offer(self, assignment: Assignment, labels: Iterable[str]) -> OfferReply:
            self.offers.append(assignment)
            return OfferReply(OfferVerdict.NAK, "busy")

    kv = MemoryKV(keys.SPACES)
    log = LocalCommandLog(kv)
    reader = StateReader(kv)
    await log.propose(c.RegisterDag(at_ms=1, spec=spec_from_yaml(DAG).to_dict()))
    await log.propose(c.CreateRun(at_ms=2, dag_id="d"))
    wall, mono = [1_000_000], [0]
    coord = Coordinator(log, reader, lambda *a: None, lambda: wall[0], monotonic_ms=lambda: mono[0])
    w1 = Refusing("w1")
    coord.add_worker(w1)
    await coord.dispatch_pass()
    assert len(w1.offers) == 1
    wall[0] -= 3_600_000  # a step back: the back-off still ends 500 ms after the NAK
    mono[0] += 499
    await coord.dispatch_pass()
    assert len(w1.offers) == 1
    mono[0] += 1
    await coord.dispatch_pass()
    assert len(w1.offers) == 2


async def _driven_with_a_running_task(revoke: bool) -> TaskRecord:
    """w1 (admitted) drives a run whose task ``a`` is RUNNING; w1 is lost (revoked, or just
    gone); the run is given to w2: the record of ``a`` w2's driver starts from."""
    w1, w2 = Worker("w1"), Worker("w2")
    coord, log, reader, runs = await setup(w1)
    await _admit(log, "w1")
    await _a_running_on(coord, log, w1, runs[0])
    if revoke:
        await log.propose(c.RevokeWorker(at_ms=5, worker_id="w1"))
    coord.worker_lost("w1")
    coord.add_worker(w2)
    await coord.dispatch_pass()
    assert runs[0] in [a.run_id for a in w2.offers]
    stored = reader.task(runs[0], "a")
    assert stored is not None
    return TaskRecord.from_dict(stored)


async def test_the_tasks_of_a_revoked_worker_say_it_was_revoked() -> None:
    revoked = await _driven_with_a_running_task(revoke=True)
    assert (revoked.state, revoked.error) == (TaskState.QUEUED, REVOKED_ERROR)
    assert interrupted_attempt(revoked) == 1
    note, event = interrupted_lines("a", 1, revoked.worker, revoked.error)
    assert event == "a attempt 1 interrupted (its worker w1 was revoked); running it again as attempt 2"
    assert note == "[kiok] attempt 1 interrupted: its worker w1 was revoked; retried as attempt 2"
    lost = await _driven_with_a_running_task(revoke=False)
    assert (lost.state, lost.error, interrupted_attempt(lost)) == (TaskState.QUEUED, LOST_ERROR, 1)


async def test_a_revoked_worker_drives_nothing_more_even_when_no_other_can_take_its_runs() -> None:
    """Found by the day-one walk: a run whose only able worker was revoked showed that worker
    driving and its task RUNNING (no error) for as long as no other worker came; re-admitted
    under the same id, the worker was then told its tasks were "lost", not revoked."""
    w1 = Worker("w1")
    coord, log, reader, runs = await setup(w1)
    await _admit(log, "w1")
    report = await _a_running_on(coord, log, w1, runs[0])
    await log.propose(c.RevokeWorker(at_ms=5, worker_id="w1", take_runs=True))
    header = reader.run_header(runs[0])
    assert header is not None and header["worker"] is None and header["state"] == "RUNNING", header
    stored = reader.task(runs[0], "a")
    assert stored is not None
    lost = TaskRecord.from_dict(stored)
    assert (lost.state, lost.error, lost.worker) == (TaskState.QUEUED, REVOKED_ERROR, "w1")
    late = await log.propose(dataclasses.replace(report, at_ms=6))  # a late report is fenced off
    assert late["fenced"], late
    assert runs[0] not in coord._driving  # back in the pool, for whichever worker comes
    # Re-admitted under the same id (a new token), it takes the run again: "was revoked".
    coord.worker_lost("w1")
    await log.propose(c.IssueJoinToken(at_ms=7, token_hash="t2", expires_ms=10**12))
    await log.propose(c.RedeemJoinToken(at_ms=7, token_hash="t2", worker_id="w1", credential_hash="c2"))
    again = Worker("w1")
    coord.add_worker(again)
    await coord.dispatch_pass()
    assert runs[0] in [a.run_id for a in again.offers]
    stored = reader.task(runs[0], "a")
    assert stored is not None and TaskRecord.from_dict(stored).error == REVOKED_ERROR, stored


async def _admit(log: LocalCommandLog, worker_id: str) -> None:
    """``worker_id`` redeems a join token (an admitted worker, which can be revoked)."""
    await log.propose(c.IssueJoinToken(at_ms=3, token_hash="t1", expires_ms=10**12))
    await log.propose(c.RedeemJoinToken(at_ms=3, token_hash="t1", worker_id=worker_id, credential_hash="c1"))


def _master_lines(log: LocalCommandLog, run_id: str) -> list[bytes]:
    """What apply adds to ``run_id``'s run log from now on (filled as commands apply)."""
    lines: list[bytes] = []
    log.subscribe(
        lambda fx: lines.extend(d for r, t, d, _ in fx.log_appends if (r, t) == (run_id, "__run__"))
    )
    return lines


async def _a_running_on(coord: Coordinator, log: LocalCommandLog, w1: Worker, run_id: str) -> c.ReportTasks:
    """A dispatch pass; then ``w1``, offered ``run_id``, reports its task ``a`` RUNNING (the
    report, to send again late)."""
    await coord.dispatch_pass()
    fence = next(a for a in w1.offers if a.run_id == run_id).fence
    running = TaskRecord(TaskState.RUNNING, attempt=1, started_at_ms=4, worker="w1")
    report = c.ReportTasks(
        at_ms=4,
        run_id=run_id,
        term=fence.term,
        epoch=fence.epoch,
        tasks={"a": running.to_dict()},
        worker="w1",
    )
    await log.propose(report)
    return report


async def _revoked_while_running(*, take_runs: bool, cancel: bool) -> tuple[dict[str, Any], list[bytes]]:
    """w1 drives a run whose task ``a`` is RUNNING (being cancelled, with ``cancel``) and is
    revoked; no other worker comes. The run's header then, and what apply added to its run log."""
    w1 = Worker("w1")
    coord, log, reader, runs = await setup(w1)
    run_log = _master_lines(log, runs[0])
    await _admit(log, "w1")
    await _a_running_on(coord, log, w1, runs[0])
    if cancel:
        await log.propose(c.CancelRun(at_ms=5, run_id=runs[0], by="admin"))
    await log.propose(c.RevokeWorker(at_ms=6, worker_id="w1", take_runs=take_runs))
    header = reader.run_header(runs[0])
    assert header is not None
    return header, run_log


async def test_a_run_being_cancelled_when_its_driver_is_revoked_ends() -> None:
    """Found by the review of the change above: no driver was left to finish the cancel, and
    the run waited (RUNNING) for a worker that could take it, for good."""
    header, run_log = await _revoked_while_running(take_runs=True, cancel=True)
    assert (header["state"], header["worker"]) == ("CANCELLED", None), header
    # ...and its run log says how it ended, as its driver would have (found by the re-probe).
    requested, line = run_log
    assert requested.endswith(b" cancel requested by admin\n")
    assert line.endswith(
        b" run stopped, cancelled by admin: the run was cancelled (its worker w1 was revoked)\n"
    )


async def test_a_cancelled_run_whose_driver_is_gone_ends_without_a_new_driver() -> None:
    """Found while reviewing revocation: a run whose only able worker died was cancelled, the
    cancel went to the dead driver, and the run waited, RUNNING, "no worker is connected",
    for a worker to take it only to stop it. Its cancel is now finished where it stands."""
    w1 = Worker("w1")
    coord, log, reader, runs = await setup(w1)
    await _a_running_on(coord, log, w1, runs[0])
    coord.worker_lost("w1")
    await log.propose(c.CancelRun(at_ms=5, run_id=runs[0], by="admin"))
    header = reader.run_header(runs[0])
    assert header is not None and header["state"] == "RUNNING", header  # told to a driver that is gone
    coord_log: list[str] = []
    coord._append_log = lambda run_id, task_id, data: coord_log.append(data.decode())
    await coord.dispatch_pass()
    header = reader.run_header(runs[0])
    assert header is not None and (header["state"], header["cancelBy"]) == ("CANCELLED", "admin"), header
    stored = reader.task(runs[0], "a")
    assert stored is not None and stored["state"] == "CANCELLED", stored
    assert coord_log[-1].endswith(
        "run stopped, cancelled by admin: the run was cancelled (its driver w1 is gone)\n"
    ), coord_log
    other = reader.run_header(runs[1])  # not cancelled: it waits for a worker, as before
    assert other is not None and other["state"] == "RUNNING" and "no worker" in coord.waiting[runs[1]]


async def test_a_revocation_logged_before_take_runs_applies_as_it_did() -> None:
    """Every master applies an entry alike, whatever its version: one logged before the field
    existed (or by an older leader) leaves the run with its driver, as it did then."""
    header, _ = await _revoked_while_running(take_runs=False, cancel=False)
    assert (header["state"], header["worker"]) == ("RUNNING", "w1"), header
    assert "take_runs" in c.RevokeWorker(at_ms=1, worker_id="w").to_wire()  # older masters stop on it


async def test_a_run_its_driver_claimed_again_no_longer_waits_for_it() -> None:
    """Found by the failover probe: the run said "waiting for its driver w1 to reconnect"
    until it ended, though w1 had reconnected and went on driving it."""
    log, reader, run = await _driven_by_w1()
    header = reader.run_header(run)
    assert header is not None

    new = Coordinator(log, reader, lambda *a: None, lambda: 2000, term=2, reattach_grace_ms=5000)
    log.subscribe(new.on_effects)
    await new.dispatch_pass()  # a new leader: w1 has not reconnected yet
    assert new.waiting[run] == "waiting for its driver w1 to reconnect"
    assert new.reattach("w1", [Claim(run, Fence(header["term"], header["epoch"]))]) == ()
    new.add_worker(Worker("w1"))
    await new.dispatch_pass()
    assert run not in new.waiting


async def test_a_cancelled_run_ended_by_a_report_sent_before_the_cancel_says_how_it_stopped() -> None:
    """The failover probe of session 28: cancelled while its leader failed over, a run ended
    on its driver's report of its last running task's success, sent before the driver heard
    of the cancel; the driver's own "run stopped" line came after the end and was refused, so
    the run log ended at the success. The masters say it as the run ends."""
    w1 = Worker("w1")
    coord, log, reader, runs = await setup(w1)
    run_log = _master_lines(log, runs[0])
    running = await _a_running_on(coord, log, w1, runs[0])
    await log.propose(c.CancelRun(at_ms=5, run_id=runs[0], by="admin"))
    assert [line.split(b" ", 1)[1] for line in run_log] == [
        b"cancel requested by admin\n"
    ]  # its driver stops it
    done = TaskRecord(TaskState.SUCCESS, attempt=1, started_at_ms=4, ended_at_ms=6, worker="w1")
    await log.propose(dataclasses.replace(running, at_ms=6, tasks={"a": done.to_dict()}))
    header = reader.run_header(runs[0])
    assert header is not None and header["state"] == "CANCELLED", header
    _, line = run_log
    assert line.endswith(b" run stopped, cancelled by admin: the run was cancelled\n"), line


async def test_a_run_that_ends_on_its_last_report_says_how_it_ended() -> None:
    """The failover probe of session 29: ~1 % of short runs' logs ended at "x attempt 1
    SUCCESS", with no fault at all: the last task's report went out on its linger timer before
    the driver's walk wrote "run finished SUCCESS", and that line, after the end, was refused.
    The masters write it as they end the run, before any line of the driver's could be late."""
    w1 = Worker("w1")
    coord, log, reader, runs = await setup(w1)
    run_log = _master_lines(log, runs[0])
    running = await _a_running_on(coord, log, w1, runs[0])
    assert run_log == []
    done = TaskRecord(TaskState.SUCCESS, attempt=1, started_at_ms=4, ended_at_ms=6, worker="w1")
    await log.propose(dataclasses.replace(running, at_ms=6, tasks={"a": done.to_dict()}))
    header = reader.run_header(runs[0])
    assert header is not None and header["state"] == "SUCCESS", header
    [line] = run_log
    assert line.endswith(b" run finished SUCCESS\n"), line


async def test_a_cancel_or_timeout_that_ends_a_run_at_once_says_so_before_its_last_line() -> None:
    """The failover re-probe of session 29: the cancel's "cancel requested by" (and a run
    timeout's line) was a proposal of its own after the cancel, which had already ended the
    run: it came after "run stopped". And a PENDING run cancelled got no last line at all."""
    w1 = Worker("w1", free=0)  # no room: the runs stay PENDING
    coord, log, reader, runs = await setup(w1)
    cancelled, timed_out = _master_lines(log, runs[0]), _master_lines(log, runs[1])
    await coord.dispatch_pass()
    await log.propose(c.CancelRun(at_ms=5, run_id=runs[0], by="admin"))
    await log.propose(c.FailRun(at_ms=6, run_id=runs[1], reason="run timed out after 3s"))
    assert [line.split(b" ", 1)[1] for line in cancelled] == [
        b"cancel requested by admin\n",
        b"run stopped, cancelled by admin: the run was cancelled\n",
    ]
    assert [line.split(b" ", 1)[1] for line in timed_out] == [
        b"run timed out after 3s: failing the run, its tasks are cancelled\n",
        b"run stopped, cancelled: run timed out after 3s\n",
    ]
    for run_id in runs:
        header = reader.run_header(run_id)
        assert header is not None and header["state"] in ("CANCELLED", "FAILED"), header


async def test_a_run_without_a_driver_cancelled_by_a_user_says_how_it_stopped() -> None:
    """Found reviewing the re-probe's fix: a run given back by its driver (RUNNING, waiting
    for another) and cancelled by a user ended at once, with no last line from anyone (the
    coordinator says it only for the cancels it finishes itself)."""
    w1 = Worker("w1")
    coord, log, reader, runs = await setup(w1)
    run_log = _master_lines(log, runs[0])
    await _a_running_on(coord, log, w1, runs[0])
    coord.worker_lost("w1")
    header = reader.run_header(runs[0])
    assert header is not None
    await log.propose(
        c.ReleaseRun(at_ms=5, run_id=runs[0], epoch=header["epoch"], reason="gone", worker="w1")
    )
    await log.propose(c.CancelRun(at_ms=6, run_id=runs[0], by="admin"))
    header = reader.run_header(runs[0])
    assert header is not None and (header["state"], header["worker"]) == ("CANCELLED", None), header
    assert [line.split(b" ", 1)[1] for line in run_log][-2:] == [
        b"cancel requested by admin\n",
        b"run stopped, cancelled by admin: the run was cancelled\n",
    ]
