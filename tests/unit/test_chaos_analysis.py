"""The chaos soak's verdicts (bench/chaos/analysis.py) on synthetic ledgers: a clean soak
passes; a duplicate execution, a stall and a lost log are each found; faults excuse what
docs/cluster.md allows (a re-run after its worker was killed) and nothing more."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench.chaos import analysis as an
from bench.chaos.cluster import dags
from kiok.dag.load import spec_from_yaml

HB = 5.0
BOUNDS = an.Bounds(leader_failover_s=3.0, driver_failover_s=HB + 1, driver_failover_overlapping_s=HB + 1)


def line(run: str, task: str, attempt: int, worker: str, what: str, at: float) -> str:
    return f"{run} {task} {attempt} {worker} {what} {at:.6f}"


def chain_ledger(run: str = "r1", worker: str = "w1", t0: float = 100.0) -> list[str]:
    """Three tasks one after another, 0.5 s each, 0.1 s apart."""
    out = []
    for i, task in enumerate(("a", "b", "c")):
        start = t0 + i * 0.6
        out += [line(run, task, 1, worker, "start", start), line(run, task, 1, worker, "ok", start + 0.5)]
    return out


def run_view(
    run: str = "r1", created: float = 99.9, ended: float | None = 101.8, attempts: int = 1
) -> an.RunView:
    tasks = {t: an.TaskView("SUCCESS", attempts if t == "a" else 1) for t in ("a", "b", "c")}
    return an.RunView(run, "SUCCESS" if ended else "RUNNING", created, ended, tasks)


def full_logs(run: an.RunView, master: str = "m1") -> list[an.StoredLog]:
    logs = [
        an.StoredLog(
            master, run.run_id, t, "\n".join(an.expected_task_lines(run.run_id, t, tv.attempt)) + "\n"
        )
        for t, tv in run.tasks.items()
    ]
    runlog = "".join(
        f"2026-01-01T00:00:00Z {t} attempt {tv.attempt} started\n"
        f"2026-01-01T00:00:01Z {t} attempt {tv.attempt} SUCCESS (exit code 0, 0.5s)\n"
        for t, tv in run.tasks.items()
    )
    logs.append(
        an.StoredLog(master, run.run_id, "__run__", runlog + "2026-01-01T00:00:02Z run finished SUCCESS\n")
    )
    return logs


def findings(
    ledger: list[str], runs: list[an.RunView], logs: list[an.StoredLog], faults: list[an.Fault] | None = None
) -> an.Findings:
    faults = faults or []
    executions, bad = an.parse_ledger("\n".join(ledger) + "\n")
    by_id = {r.run_id: r for r in runs}
    return an.Findings(
        lost=an.lost_logs(by_id, logs),
        duplicates=an.duplicates(executions, faults, grace_s=HB + 2),
        stalls=an.stalls(runs, executions, faults, {}, HB + 2, now=200.0),
        leader_failover_s=[f.end - f.start for f in faults if f.kind is an.FaultKind.LEADER_KILL],
        driver_failovers=an.driver_failovers(executions, faults, HB),
        unfinished=[r.run_id for r in runs if r.ended is None],
        missing_on_masters=[],
        differ_between_masters=[],
        unreadable_ledger_lines=bad,
        process_log_problems=an.process_log_problems({"m1": "2026-01-01 00:00:00,000 INFO kiok: up\n"}),
    )


def test_a_clean_ledger_passes() -> None:
    run = run_view()
    f = findings(chain_ledger(), [run], full_logs(run))
    assert an.missed_targets(f, BOUNDS) == []


def test_the_ledger_pairs_starts_with_ends_and_counts_unreadable_lines() -> None:
    execs, bad = an.parse_ledger(
        "\n".join([line("r1", "a", 1, "w1", "start", 1.0), "garbage", line("r1", "a", 1, "w1", "ok", 2.0)])
    )
    assert execs == [an.Execution("r1", "a", 1, "w1", 1.0, 2.0, "ok")] and bad == 1


def test_an_attempt_executed_twice_is_a_duplicate() -> None:
    run = run_view()
    ledger = [
        *chain_ledger(),
        line("r1", "b", 1, "w2", "start", 100.7),
        line("r1", "b", 1, "w2", "ok", 101.2),
    ]
    f = findings(ledger, [run], full_logs(run))
    assert [(d.task_id, d.why.split(":")[0]) for d in f.duplicates] == [("b", "attempt 1 executed twice")]
    assert an.missed_targets(f, BOUNDS) == ["1 duplicate executions on live drivers"]


def test_a_task_that_succeeded_running_again_with_no_worker_fault_is_a_duplicate() -> None:
    run = run_view(attempts=2)
    ledger = [
        *chain_ledger(),
        line("r1", "a", 2, "w2", "start", 101.0),
        line("r1", "a", 2, "w2", "ok", 101.5),
    ]
    leader_kill = an.Fault(an.FaultKind.LEADER_KILL, "m1", 100.55, 101.5)  # excuses nothing
    f = findings(ledger, [run], full_logs(run), [leader_kill])
    assert len(f.duplicates) == 1 and "after it succeeded" in f.duplicates[0].why


def test_a_rerun_after_its_worker_was_killed_or_after_a_failed_attempt_is_no_duplicate() -> None:
    run = run_view(attempts=2, ended=107.5)
    ledger = [
        line("r1", "a", 1, "w1", "start", 100.0),  # killed mid-attempt: no end line
        line("r1", "a", 2, "w2", "start", 105.5),
        line("r1", "a", 2, "w2", "ok", 106.0),
        line("r1", "b", 1, "w2", "start", 106.1),
        line("r1", "b", 1, "w2", "fail", 106.6),
        line("r1", "b", 2, "w2", "start", 106.7),
        line("r1", "b", 2, "w2", "ok", 107.0),
        line("r1", "c", 1, "w2", "start", 107.1),
        line("r1", "c", 1, "w2", "ok", 107.4),
    ]
    kill = an.Fault(an.FaultKind.WORKER_KILL, "w1", 100.2, 103.0)
    run = an.RunView(
        "r1",
        "SUCCESS",
        99.9,
        107.5,
        {"a": an.TaskView("SUCCESS", 2), "b": an.TaskView("SUCCESS", 2), "c": an.TaskView("SUCCESS", 1)},
    )
    f = findings(ledger, [run], full_logs(run), [kill])
    assert f.duplicates == [] and f.stalls == []
    assert [(d.run_id, d.seconds, d.overlaps_leader_failover) for d in f.driver_failovers] == [
        ("r1", 5.3, False)
    ]
    assert an.missed_targets(f, BOUNDS) == []


def test_a_gap_with_no_task_executing_past_the_threshold_is_a_stall() -> None:
    ledger = [
        *chain_ledger()[:4],
        line("r1", "c", 1, "w1", "start", 110.0),
        line("r1", "c", 1, "w1", "ok", 110.5),
    ]
    run = run_view(ended=110.6)
    f = findings(ledger, [run], full_logs(run))
    assert [(s.run_id, s.seconds) for s in f.stalls] == [("r1", 8.9)]
    assert an.missed_targets(f, BOUNDS) == ["1 stalls"]
    # The time a leader failover was in progress does not count toward a stall ...
    leader_kill = an.Fault(an.FaultKind.LEADER_KILL, "m2", 101.5, 104.0)
    assert findings(ledger, [run], full_logs(run), [leader_kill]).stalls == []
    # ... nor a fault of a worker that has nothing to do with the run.
    other = an.Fault(an.FaultKind.WORKER_KILL, "w3", 101.5, 104.0)
    assert len(findings(ledger, [run], full_logs(run), [other]).stalls) == 1


def test_a_run_that_never_ends_stalls_and_is_unfinished() -> None:
    run = run_view(ended=None)
    f = findings(chain_ledger(), [run], full_logs(run))
    assert [s.run_id for s in f.stalls] == ["r1"] and f.unfinished == ["r1"]


def test_a_successful_task_whose_stored_log_lacks_its_lines_is_a_lost_log() -> None:
    run = run_view()
    logs = full_logs(run)
    logs[1] = an.StoredLog("m1", "r1", "b", an.expected_task_lines("r1", "b", 1)[0] + "\n")  # "end" lost
    runlog = logs[-1]
    logs[-1] = an.StoredLog("m1", "r1", "__run__", runlog.text.replace(" c attempt 1 started\n", " \n"))
    f = findings(chain_ledger(), [run], logs)
    assert [(x.task_id, x.missing) for x in f.lost] == [
        ("b", ("chaos-out r1 b 1 end",)),
        ("__run__", (" c attempt 1 started",)),
    ]
    assert an.missed_targets(f, BOUNDS) == ["1 lost logs", "1 run logs missing lines"]


def test_failover_times_beyond_their_bounds_are_missed_targets() -> None:
    run = run_view(ended=112.0)
    ledger = [line("r1", "a", 1, "w1", "start", 100.0), line("r1", "a", 2, "w2", "start", 107.5)]
    ledger += [line("r1", "a", 2, "w2", "ok", 108.0), *chain_ledger(t0=108.1)[2:]]
    kill = an.Fault(an.FaultKind.WORKER_KILL, "w1", 100.2, 103.0)
    leader = an.Fault(an.FaultKind.LEADER_KILL, "m1", 90.0, 93.5)
    run = an.RunView("r1", "SUCCESS", 99.9, 112.0, {**run.tasks, "a": an.TaskView("SUCCESS", 2)})
    f = findings(ledger, [run], full_logs(run), [kill, leader])
    assert an.missed_targets(f, BOUNDS) == [
        "leader failover max 3.500 s > 3.0 s",
        "driver failover max 7.300 s > 6.0 s",
    ]


def test_masters_that_miss_or_disagree_on_a_run_are_named() -> None:
    r = run_view()
    other = an.RunView("r1", "FAILED", r.created, r.ended, r.tasks)
    views: dict[str, dict[str, an.RunView | None]] = {
        "m1": {"r1": r},
        "m2": {"r1": other},
        "m3": {"r1": None},
    }
    assert an.disagreements(["r1"], views) == {"missing": ["m3 r1"], "differ": ["r1"]}


def test_every_task_of_the_soak_dags_writes_the_ledger_and_prints_the_expected_lines() -> None:
    texts = dags(Path("/tmp/ledger"))
    assert sorted(texts) == ["chaos_chain", "chaos_diamond", "chaos_fanout", "chaos_retry"]
    for dag_id, text in texts.items():
        spec = spec_from_yaml(text)  # valid, as the masters will read it
        assert spec.id == dag_id
        assert text.count(">> /tmp/ledger") == text.count("    script: |") * 2 + text.count("exit 1")
        assert "chaos-out $KIOK_RUN_ID $KIOK_TASK_ID $KIOK_ATTEMPT begin" in text


def test_a_traceback_in_a_process_log_is_a_missed_target() -> None:
    run = run_view()
    f = findings(chain_ledger(), [run], full_logs(run))
    logs = {
        "w1": "2026-01-01 00:00:00,000 ERROR kiok.worker: link\nTraceback (most recent call last):\n  ...\n"
    }
    f = dataclasses.replace(f, process_log_problems=an.process_log_problems(logs))
    assert f.process_log_problems == {"w1": {"tracebacks": 1, "neverRetrieved": 0, "errors": 1}}
    assert an.missed_targets(f, BOUNDS) == ["1 tracebacks in the processes' logs"]


def test_a_driver_failover_overlapping_a_leader_failover_is_judged_from_the_election() -> None:
    """A new leader gives a dead driver the heartbeat timeout from its election: a run that
    moved 9.5 s after its worker died is within bounds when the new leader answered 4.7 s
    after that death, and over them when it answered at once."""
    ledger = [
        line("r1", "a", 1, "w1", "start", 100.0),
        line("r1", "a", 1, "w1", "ok", 100.1),
        line("r1", "b", 1, "w1", "start", 100.2),
        line("r1", "b", 2, "w2", "start", 109.7),
        line("r1", "b", 2, "w2", "ok", 109.9),
        line("r1", "c", 1, "w2", "start", 110.0),
        line("r1", "c", 1, "w2", "ok", 110.2),
    ]
    kill = an.Fault(an.FaultKind.WORKER_KILL, "w1", 100.2, 103.0)
    run = an.RunView(
        "r1",
        "SUCCESS",
        99.9,
        110.3,
        {"a": an.TaskView("SUCCESS", 1), "b": an.TaskView("SUCCESS", 2), "c": an.TaskView("SUCCESS", 1)},
    )
    late_election = an.Fault(an.FaultKind.LEADER_KILL, "m1", 102.5, 104.9)
    f = findings(ledger, [run], full_logs(run), [kill, late_election])
    [d] = f.driver_failovers
    assert (d.seconds, d.overlaps_leader_failover, d.from_election_s) == (9.5, True, 4.8)
    assert not any("driver failover" in m for m in an.missed_targets(f, BOUNDS))

    quick_election = an.Fault(an.FaultKind.LEADER_KILL, "m1", 100.1, 100.5)
    f = findings(ledger, [run], full_logs(run), [kill, quick_election])
    assert "driver failover overlapping a leader failover (from the election) max 9.200 s > 6.0 s" in (
        an.missed_targets(f, BOUNDS)
    )


def test_a_fault_of_the_runs_next_driver_starts_a_second_failover() -> None:
    """Seed 19's case: w1 stopped while executing r1's task, r1 handed to w2, which is killed
    50 ms later, before it started anything; w3 starts the task 8.2 s after the first fault.
    Judged from w2's kill (the failover that w2's fault began): 3.2 s. A fault of a worker
    the run was never handed to changes nothing."""
    ledger = [
        line("r1", "a", 1, "w1", "start", 100.0),
        line("r1", "a", 2, "w3", "start", 108.2),
        line("r1", "a", 2, "w3", "ok", 108.3),
    ]
    stop = an.Fault(an.FaultKind.WORKER_STOP, "w1", 100.0, 120.0)
    kill = an.Fault(an.FaultKind.WORKER_KILL, "w2", 105.05, 110.0)
    run_log = "2026-01-01T00:00:00.000Z assigned to worker w1 (fence 1/1)\n" + (
        "1970-01-01T00:01:45.000Z assigned to worker w2 (fence 1/2)\n"
    )
    assert an.assignments(run_log) == [(1767225600.0, "w1"), (105.0, "w2")]
    executions, _ = an.parse_ledger("\n".join(ledger) + "\n")
    [d] = an.driver_failovers(executions, [stop, kill], HB, {"r1": an.assignments(run_log)})
    assert (d.seconds, d.from_next_driver_fault_s, d.judged_s) == (8.2, 3.15, 3.15)
    [unrelated] = an.driver_failovers(executions, [stop, kill], HB, {"r1": [(105.0, "w9")]})
    assert (unrelated.from_next_driver_fault_s, unrelated.judged_s) == (None, 8.2)
