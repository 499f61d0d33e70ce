"""The real-process chaos soak (issue 14): 3 masters + 3 workers on 127.0.0.1, mixed DAGs
triggered continuously, seeded random kill -9 of workers and of the leader and SIGSTOP of a
worker for ``--minutes``; then every run is waited for and checked (docs/reliability.md).

    .venv/bin/python -m bench.chaos --minutes 15 [--seed 1] [--heartbeat-timeout-ms 5000]

Prints the report as JSON, writes it to ``bench/results/chaos-<date>.json`` and exits 1 when
a target is missed (its ``targetsMissed`` says which). Not part of the test run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.chaos import analysis as an
from bench.chaos.cluster import Cluster, Injector, dags, say
from kiok.testing.process import ADMIN_PASSWORD

RESULTS = Path(__file__).resolve().parent.parent / "results"
DRIVER_LINE = re.compile(r"(?:assigned to|driving on) worker (\S+)")


def trigger_loop(
    cluster: Cluster, stop: threading.Event, interval_s: float, acked: dict[str, float], unacked: list[str]
) -> None:
    """Trigger the DAGs in turn every ``interval_s`` through any master, retrying through
    failovers; a run counts once a master answered 201 with its id."""
    for dag_id in itertools.cycle(sorted(dags(Path("/")))):
        if stop.wait(interval_s):
            return
        r = cluster.request("POST", f"/api/v1/dags/{dag_id}/runs", json={"args": {}})
        if r is not None and r.status_code == 201:
            acked[str(r.json()["runId"])] = time.time()
        else:
            unacked.append(dag_id if r is None else f"{dag_id}: {r.status_code} {r.text[:200]}")


def all_runs(cluster: Cluster) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "500", **({"cursor": cursor} if cursor else {})}
        r = cluster.request("GET", "/api/v1/runs", params=params)
        assert r is not None and r.status_code == 200, r
        body = r.json()
        runs += [x for x in body["runs"] if x["dagId"].startswith("chaos_")]
        cursor = body["nextCursor"]
        if cursor is None:
            return runs


def wait_all_ended(cluster: Cluster, acked: set[str], timeout_s: float) -> list[str]:
    """Poll until every run (acknowledged or not) ended; the ones that did not, at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        runs = all_runs(cluster)
        open_ = sorted(
            {x["runId"] for x in runs if x["state"] not in an.TERMINAL} | (acked - {x["runId"] for x in runs})
        )
        if not open_ or time.monotonic() > deadline:
            return open_
        say(f"waiting for {len(open_)} runs to end")
        time.sleep(2)


def epoch(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def run_view(body: dict[str, Any]) -> an.RunView:
    created = epoch(body["createdAt"])
    assert created is not None
    return an.RunView(
        run_id=body["runId"],
        state=body["state"],
        created=created,
        ended=epoch(body.get("endedAt")),
        tasks={t: an.TaskView(v["state"], int(v["attempt"])) for t, v in body["tasks"].items()},
    )


def read_log(client: httpx.Client, run_id: str, task_id: str) -> str:
    out: list[str] = []
    offset = 0
    while True:
        r = client.get(f"/api/v1/runs/{run_id}/tasks/{task_id}/log", params={"offset": offset})
        if r.status_code != 200:
            return "".join(out)
        body = r.json()
        out.append(body["data"])
        if body["nextOffset"] == offset:
            return "".join(out)
        offset = body["nextOffset"]


def collect(
    cluster: Cluster, run_ids: list[str]
) -> tuple[dict[str, dict[str, an.RunView | None]], list[an.StoredLog]]:
    """Every run as each master serves it, and each master's logs of every task that ended
    SUCCESS there and of every run log."""
    views: dict[str, dict[str, an.RunView | None]] = {}
    logs: list[an.StoredLog] = []
    for mid, m in cluster.masters.items():
        if m.proc is None or m.proc.poll() is not None:
            continue  # down: named in the report's processesDown
        login = httpx.post(m.url + "/api/v1/auth/login", json={"user": "admin", "password": ADMIN_PASSWORD})
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['accessToken']}"}
        with httpx.Client(base_url=m.url, headers=headers, timeout=30) as client:
            views[mid] = {}
            for run_id in run_ids:
                r = client.get(f"/api/v1/runs/{run_id}")
                view = run_view(r.json()) if r.status_code == 200 else None
                views[mid][run_id] = view
                if view is None:
                    continue
                for tid in ["__run__", *sorted(t for t, tv in view.tasks.items() if tv.state == "SUCCESS")]:
                    logs.append(an.StoredLog(mid, run_id, tid, read_log(client, run_id, tid)))
        say(f"read {len(run_ids)} runs and their logs from {mid}")
    return views, logs


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    ap.add_argument("--minutes", type=float, default=15)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--heartbeat-timeout-ms", type=int, default=5000)
    ap.add_argument("--trigger-interval", type=float, default=1.5, help="seconds between triggers")
    ap.add_argument("--leader-failover-bound", type=float, default=3.0, help="docs/performance.md")
    ap.add_argument("--drain-timeout", type=float, default=300, help="seconds for the runs to end")
    ap.add_argument(
        "--keep", action="store_true", help="keep the data, process logs and ledger (kept anyway on a miss)"
    )
    a = ap.parse_args()
    hb_s = a.heartbeat_timeout_ms / 1000
    root = Path(tempfile.mkdtemp(prefix="kiok-chaos-"))
    ledger_dir = Path(tempfile.mkdtemp(prefix="kiok-chaos-ledger-"))
    ledger_dir.chmod(0o1777)  # isolated tasks run as another user (tests/conftest.py task_tmp_path)
    ledger = ledger_dir / "ledger"
    ledger.touch()
    ledger.chmod(0o666)
    cluster = Cluster(root, a.heartbeat_timeout_ms, random.Random(a.seed + 1))
    injector = Injector(cluster, random.Random(a.seed), hb_s)
    acked: dict[str, float] = {}
    unacked: list[str] = []
    stop_triggers = threading.Event()
    say(f"data in {root}, ledger {ledger}, seed {a.seed}")
    report: dict[str, Any] | None = None
    try:
        cluster.start(ledger)
        trigger = threading.Thread(
            target=trigger_loop,
            args=(cluster, stop_triggers, a.trigger_interval, acked, unacked),
            daemon=True,
        )
        trigger.start()
        faulting = threading.Thread(target=injector.run, daemon=True)
        faulting.start()
        time.sleep(a.minutes * 60)  # the soak's length
        stop_triggers.set()
        injector.finish()
        faulting.join(30)
        trigger.join(120)
        faults_over = time.time()
        unfinished = wait_all_ended(cluster, set(acked), a.drain_timeout)
        cluster.group.settle(120)
        run_ids = sorted(set(acked) | {x["runId"] for x in all_runs(cluster)})
        views, logs = collect(cluster, run_ids)
        processes = {**cluster.masters, **cluster.workers}
        down = sorted(
            pid for pid, proc in processes.items() if proc.proc is None or proc.proc.poll() is not None
        )
        if down:
            say(f"not running after the faults (a restart failed; see their logs): {down}")
        process_logs = {p.stem: p.read_text(errors="replace") for p in sorted(root.glob("*.log"))}
        report = analyse(
            a,
            acked,
            unacked,
            unfinished,
            injector,
            views,
            logs,
            ledger.read_text(),
            faults_over,
            process_logs,
        )
        report["processesDown"] = down
        if down:
            report["targetsMissed"].append(f"processes did not come back: {', '.join(down)}")
    finally:
        cluster.stop()
        if a.keep or report is None or report["targetsMissed"]:
            say(f"kept the data, process logs and ledger: {root} {ledger_dir}")
        else:
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(ledger_dir, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"chaos-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    say(f"report written to {out}")
    return 1 if report["targetsMissed"] else 0


def lost_cases(lost: Sequence[an.LostLog], logs: Sequence[an.StoredLog], *, run_log: bool) -> dict[str, Any]:
    """Count and the first cases, each with the stored text (the evidence for a bug report)."""
    text = {(x.master, x.run_id, x.task_id): x.text for x in logs}
    cases = [x for x in lost if (x.task_id == "__run__") is run_log]
    return {
        "count": len(cases),
        "cases": [
            {**asdict(x), "stored": text.get((x.master, x.run_id, x.task_id), "")[-3000:]} for x in cases[:30]
        ],
    }


def analyse(
    a: argparse.Namespace,
    acked: dict[str, float],
    unacked: list[str],
    unfinished: list[str],
    injector: Injector,
    views: dict[str, dict[str, an.RunView | None]],
    logs: list[an.StoredLog],
    ledger_text: str,
    now: float,
    process_logs: dict[str, str],
) -> dict[str, Any]:
    hb_s = a.heartbeat_timeout_ms / 1000
    executions, bad_lines = an.parse_ledger(ledger_text)
    leader_views = max(views.values(), key=lambda v: sum(x is not None for x in v.values()))
    runs = {r: v for r, v in leader_views.items() if v is not None}
    drivers = {lg.run_id: frozenset(DRIVER_LINE.findall(lg.text)) for lg in logs if lg.task_id == "__run__"}
    assigned: dict[str, list[tuple[float, str]]] = {}
    for lg in logs:
        if lg.task_id == "__run__":
            assigned.setdefault(lg.run_id, []).extend(an.assignments(lg.text))
    faults = sorted(injector.faults, key=lambda f: f.start)
    agreement = an.disagreements(acked, views)
    findings = an.Findings(
        lost=an.lost_logs(runs, logs),
        duplicates=an.duplicates(executions, faults, grace_s=hb_s + 2),
        stalls=an.stalls(list(runs.values()), executions, faults, drivers, hb_s + 2, now),
        leader_failover_s=injector.leader_failover_s,
        driver_failovers=an.driver_failovers(executions, faults, hb_s, assigned),
        unfinished=unfinished,
        missing_on_masters=agreement["missing"],
        differ_between_masters=agreement["differ"],
        unreadable_ledger_lines=bad_lines,
        process_log_problems=an.process_log_problems(process_logs),
    )
    bounds = an.Bounds(a.leader_failover_bound, hb_s + 1, hb_s + 1)
    by_state: dict[str, int] = {}
    for v in runs.values():
        by_state[v.state] = by_state.get(v.state, 0) + 1
    driver = findings.driver_failovers
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": a.seed,
        "minutes": a.minutes,
        "heartbeatTimeoutS": hb_s,
        "runs": {
            "acknowledged": len(acked),
            "triggersNotAcknowledged": len(unacked),
            "seen": len(runs),
            "ended": sum(v.state in an.TERMINAL for v in runs.values()),
            "byState": by_state,
            "unfinished": list(unfinished),
        },
        "executions": {
            "total": len(executions),
            "tasksSucceeded": sum(t.state == "SUCCESS" for v in runs.values() for t in v.tasks.values()),
            "unreadableLedgerLines": bad_lines,
        },
        "faults": {k.value: sum(f.kind is k for f in faults) for k in an.FaultKind},
        "leaderFailoverS": {**an.summary(injector.leader_failover_s), "bound": bounds.leader_failover_s},
        "driverFailoverS": {
            **an.summary([d.seconds for d in driver if not d.overlaps_leader_failover]),
            "bound": bounds.driver_failover_s,
            "fromNextDriverFault": an.summary(
                [d.judged_s for d in driver if d.from_next_driver_fault_s is not None]
            ),
            "overlappingLeaderFailover": {
                **an.summary([d.seconds for d in driver if d.overlaps_leader_failover]),
                "fromElection": an.summary([d.judged_s for d in driver if d.overlaps_leader_failover]),
                "bound": bounds.driver_failover_overlapping_s,
                "boundCountsFrom": "the new leader answering",
            },
        },
        "lostLogs": lost_cases(findings.lost, logs, run_log=False),
        "runLogsMissingLines": lost_cases(findings.lost, logs, run_log=True),
        "duplicateExecutions": {
            "count": len(findings.duplicates),
            "cases": [asdict(x) for x in findings.duplicates[:50]],
        },
        "stalls": {"count": len(findings.stalls), "cases": [asdict(x) for x in findings.stalls[:50]]},
        "missingOnMasters": agreement["missing"],
        "mastersAgree": not agreement["differ"] and not agreement["missing"],
        "differBetweenMasters": agreement["differ"],
        "processLogs": findings.process_log_problems,
        "faultLog": [{**asdict(f), "kind": f.kind.value} for f in faults],
        "targetsMissed": an.missed_targets(findings, bounds),
    }


if __name__ == "__main__":
    sys.exit(main())
