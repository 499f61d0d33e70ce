"""A master and one worker that dials it through a ``CuttableRelay``, running a two-task DAG
whose tasks each wait for a gate: what the tests of a worker cut off while its run ends
share. Each task appends ``<task>-<attempt>`` to ``marks``, so a test sees what ran twice."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiok.testing.process import Master, WorkerProcess
from kiok.testing.relay import CuttableRelay


@dataclass
class Relayed:
    master: Master
    relay: CuttableRelay
    worker: WorkerProcess
    marks: Path
    gates: dict[str, Path]

    def trigger(self) -> str:
        return self.master.trigger("two")

    def started(self, task: str) -> bool:
        """Whether ``task``'s first attempt has begun (its process wrote its mark)."""
        return self.marks.exists() and f"{task}-1" in self.marks.read_text()

    def cut_and_finish(self, run_id: str) -> None:
        """Once ``b`` runs (its process started, so its start's commit reached the worker:
        the master showing it RUNNING is not enough, the answer may still be on its way, and
        a cut then holds the attempt back): cut the worker off, let ``b`` end, and wait until
        the worker has finished the run, its end left in the outbox."""
        self.master.wait_for(lambda: self.started("b"), 30, "b to start")
        self.relay.cut()
        self.gates["b"].touch()
        self.master.wait_for(
            lambda: self.worker.status()["activeRuns"] == 0, 30, "the worker to finish the run"
        )

    def assert_ran_once(self, done: dict[str, Any]) -> None:
        assert done["state"] == "SUCCESS", done
        assert {t: (r["state"], r["attempt"]) for t, r in done["tasks"].items()} == {
            "a": ("SUCCESS", 1),
            "b": ("SUCCESS", 1),
        }, done["tasks"]
        assert self.marks.read_text() == "a-1\nb-1\n"  # nothing ran again


@contextmanager
def relayed(tmp_path: Path, task_tmp_path: Path, env: dict[str, str]) -> Iterator[Relayed]:
    """Started and open; ``a``'s gate is closed (``gates["a"].touch()`` opens it)."""
    # The cut lasts a while: the master keeps the run with its worker meanwhile.
    env = {"KIOK_WORKER_HEARTBEAT_TIMEOUT_MS": "60000", "KIOK_WORKER_HEARTBEAT_INTERVAL_MS": "300", **env}
    marks = task_tmp_path / "marks"
    gates = {t: task_tmp_path / f"gate_{t}" for t in ("a", "b")}
    master = Master(tmp_path / "master", env).start()
    relay = CuttableRelay(master.internal_address).start()
    worker = WorkerProcess(
        tmp_path / "w1", relay.address, "w1", {**env, "KIOK_WORKER_JOIN_TOKEN": master.join_token()}
    )
    try:
        worker.start()
        master.wait_open()
        master.register(
            "dag: {id: two}\ntasks:\n"
            + "".join(
                f"  - {{id: {t}, {req}script: 'echo {t}-$KIOK_ATTEMPT >> {marks}; "
                f"while [ ! -e {gates[t]} ]; do sleep 0.05; done'}}\n"
                for t, req in (("a", ""), ("b", "requires: [a], "))
            )
        )
        yield Relayed(master, relay, worker, marks, gates)
    finally:
        worker.stop()
        master.stop()
        relay.close()
