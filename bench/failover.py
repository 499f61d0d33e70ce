"""Driver failover: kill -9 of the worker driving a run (1 master + 2 workers) until the
run is resumed on the other worker, over --trials runs.

    .venv/bin/python bench/failover.py [--trials 5] [--heartbeat-timeout-ms 5000]

Prints one JSON line per trial ({"trial","kill_to_reassigned_s","kill_to_resumed_s"}) and a
summary ({"metric":"driver_failover", "median_s", "max_s", "heartbeat_timeout_s"}).
"Reassigned": the run has a new driver; "resumed": the interrupted task runs again there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from kiok.testing.process import Master, WorkerProcess

DAG = """
dag: {id: failover}
tasks:
  - {id: first, script: 'true'}
  - {id: slow, requires: [first], script: 'sleep 30'}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--heartbeat-timeout-ms", type=int, default=5000)
    a = ap.parse_args()
    env = {"KIOK_WORKER_HEARTBEAT_TIMEOUT_MS": str(a.heartbeat_timeout_ms), "KIOK_LOG_LEVEL": "WARNING"}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        master = Master(Path(tmp) / "master", env).start()
        workers: dict[str, WorkerProcess] = {}
        try:
            for trial in range(a.trials):
                for wid in ("a", "b"):
                    name = f"{wid}{trial}"
                    if not any(w.worker_id.startswith(wid) for w in workers.values()):
                        token = master.join_token()
                        worker_env = {**env, "KIOK_WORKER_JOIN_TOKEN": token}
                        w = WorkerProcess(Path(tmp) / name, master.internal_address, name, worker_env)
                        workers[name] = w.start()
                master.wait_open()
                if trial == 0:
                    master.register(DAG)
                run_id = master.trigger("failover")
                run = master.wait_for(
                    lambda r=run_id: (x := master.run(r))["tasks"]["slow"]["state"] == "RUNNING" and x,
                    30,
                    "start",
                )
                driver = run["worker"]
                t0 = time.monotonic()
                workers[driver].kill9()
                master.wait_for(
                    lambda r=run_id, d=driver: master.run(r)["worker"] not in (None, d), 60, "reassign"
                )
                t1 = time.monotonic()
                master.wait_for(
                    lambda r=run_id: (
                        (s := master.run(r)["tasks"]["slow"])["state"] == "RUNNING" and s["attempt"] == 2
                    ),
                    60,
                    "resume",
                )
                t2 = time.monotonic()
                results.append(t2 - t0)
                print(
                    json.dumps(
                        {
                            "trial": trial,
                            "kill_to_reassigned_s": round(t1 - t0, 3),
                            "kill_to_resumed_s": round(t2 - t0, 3),
                        }
                    ),
                    flush=True,
                )
                master.api("POST", f"/api/v1/runs/{run_id}/cancel")
                master.wait_run(run_id, timeout_s=30)
                del workers[driver]
        finally:
            for w in workers.values():
                w.stop()
            master.stop()
    print(
        json.dumps(
            {
                "metric": "driver_failover",
                "trials": len(results),
                "median_s": round(statistics.median(results), 3),
                "max_s": round(max(results), 3),
                "heartbeat_timeout_s": a.heartbeat_timeout_ms / 1000,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
