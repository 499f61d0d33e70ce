"""Leader failover of 3 replicated masters (default settings): kill -9 of the leader until
the first write is accepted again, over --trials trials; the killed master is restarted
and the group settles between trials.

    .venv/bin/python bench/leader_failover.py [--trials 10]

Prints one JSON line per trial ({"trial","kill_to_write_s","new_leader"}) and a summary
({"metric":"leader_failover","median_s","max_s","trials"}). "Write accepted": a
``POST /api/v1/dags/{id}/pause`` answered 200 by any surviving master (followers forward).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from kiok.testing.process import MasterGroup, WorkerProcess


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        group = MasterGroup(root).start()
        leader = group.leader()
        worker = WorkerProcess(
            root / "w1", group.workers_address, "w1", {"KIOK_WORKER_JOIN_TOKEN": leader.join_token()}
        )
        worker.start()
        leader.wait_open()
        leader.register("dag: {id: probe}\ntasks:\n  - {id: t, script: 'true'}\n")
        times: list[float] = []
        try:
            for trial in range(1, args.trials + 1):
                group.settle()
                leader = group.leader()
                survivors = group.followers(leader)
                leader.kill9()
                killed = time.monotonic()
                accepted = None
                while accepted is None:
                    for m in survivors:
                        try:
                            r = m.api("POST", "/api/v1/dags/probe/pause", timeout=2)
                        except httpx.HTTPError:
                            continue
                        if r.status_code == 200:
                            accepted = time.monotonic() - killed
                            break
                    time.sleep(0.02)
                new_leader = group.leader(exclude=_id(group, leader))
                times.append(accepted)
                print(
                    json.dumps(
                        {
                            "trial": trial,
                            "kill_to_write_s": round(accepted, 3),
                            "new_leader": _id(group, new_leader),
                        }
                    ),
                    flush=True,
                )
                leader.start(timeout_s=60)
        finally:
            worker.stop()
            group.stop()
        print(
            json.dumps(
                {
                    "metric": "leader_failover",
                    "median_s": round(statistics.median(times), 3),
                    "max_s": round(max(times), 3),
                    "trials": len(times),
                }
            )
        )


def _id(group: MasterGroup, master: object) -> str:
    return next(mid for mid, m in group.masters.items() if m is master)


if __name__ == "__main__":
    main()
