"""A task's start reaches the masters after its upstreams' ends (reported: a worker killed
right after a task ended had its downstream's start committed while the upstream's SUCCESS
still lingered in the driver, so the next driver ran both again at once, the downstream
before its upstream had succeeded). The driver sends the upstreams' ends before asking to
start, and a reconnecting worker replays its outbox's ends before its unconfirmed starts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kiok.dag.load import spec_from_yaml
from kiok.protocol.messages import Assignment, Fence
from kiok.protocol.to_master import Report
from kiok.security.kms import Keyring, worker_outbox_keyring
from kiok.worker.driver import RunDriver
from kiok.worker.executors.base import AttemptContext, AttemptResult
from kiok.worker.outbox import Outbox
from kiok.worker.slots import TaskSlots
from tests.master_clients import master_client
from tests.unit.test_worker_driver_slots import QuietLink, env


class OrderLink(QuietLink):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def report_tasks(self, run_id: str, fence: Fence, tasks: dict[str, dict[str, Any]]) -> None:
        self.events += [("report", tid, rec["state"]) for tid, rec in tasks.items()]

    async def confirm_start(self, run_id: str, fence: Fence, task_id: str, record: dict[str, Any]) -> bool:
        self.events.append(("start", task_id, record["state"]))
        return True


class Instant:
    async def run(self, ctx: AttemptContext) -> AttemptResult:
        return AttemptResult(True, exit_code=0)


async def test_a_task_asks_to_start_only_after_its_upstreams_ends_are_sent(tmp_path: Path) -> None:
    link = OrderLink()
    denv = env(tmp_path, Instant(), TaskSlots(2))  # type: ignore[arg-type]
    denv.link = link
    denv.report_linger_s = 60  # without the ordering, a's end would wait that long
    yaml = "dag: {id: d}\ntasks:\n  - {id: a, script: 'true'}\n  - {id: b, script: 'true', requires: [a]}\n"
    spec = spec_from_yaml(yaml).to_dict()
    driver = RunDriver(Assignment("r", "d", spec, {}, Fence(1, 1), {}, created_ms=0), denv)
    await asyncio.wait_for(driver.drive(), 5)
    events = link.events
    assert events.index(("report", "a", "SUCCESS")) < events.index(("start", "b", "RUNNING")), events


def test_a_reconnect_replays_the_outbox_ends_before_the_unconfirmed_starts(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    outbox.set_keys(worker_outbox_keyring(Keyring.generate(), "w1"))
    client = master_client(tmp_path, outbox=outbox)
    fence = Fence(1, 1)

    async def cut_off() -> list[Any]:
        client.report_tasks("r", fence, {"a": {"state": "RUNNING", "attempt": 1}})  # held progress
        client.report_tasks("r", fence, {"a": {"state": "SUCCESS", "attempt": 1}})  # into the outbox
        client.report_tasks("r", fence, {"b": {"state": "RUNNING", "attempt": 1}})  # held progress
        start = client.confirm_start("r", fence, "b", {"state": "RUNNING", "attempt": 1})
        await asyncio.sleep(0)  # the turn's starts are "sent" (nowhere: cut off)
        out: asyncio.Queue[Any] = asyncio.Queue()
        client._replay(out)
        del start
        return [out.get_nowait() for _ in range(out.qsize())]

    replayed = asyncio.run(cut_off())
    states = [(tid, rec["state"]) for m in replayed if isinstance(m, Report) for tid, rec in m.tasks.items()]
    # a's end first; b's held progress and its start after it; a's older progress not at all
    assert states == [("a", "SUCCESS"), ("b", "RUNNING"), ("b", "RUNNING")], replayed


class InOneProcess(OrderLink):
    """As ``kiok.roots.standalone.InProcessLink``: a start is applied with its report."""

    starts_in_reports = True
    may_be_cut_off = False

    def __init__(self) -> None:
        super().__init__()
        self.reports: list[dict[str, str]] = []

    def report_tasks(self, run_id: str, fence: Fence, tasks: dict[str, dict[str, Any]]) -> None:
        self.reports.append({tid: rec["state"] for tid, rec in tasks.items()})


async def test_in_one_process_an_upstream_s_end_goes_with_its_downstream_s_start(tmp_path: Path) -> None:
    """One report, applied at once, instead of the end flushed on its own first: a chain's
    step costs one report, not two (the order above is kept: nothing commits between)."""
    link = InOneProcess()
    denv = env(tmp_path, Instant(), TaskSlots(2))  # type: ignore[arg-type]
    denv.link = link
    yaml = "dag: {id: d}\ntasks:\n  - {id: a, script: 'true'}\n  - {id: b, script: 'true', requires: [a]}\n"
    spec = spec_from_yaml(yaml).to_dict()
    driver = RunDriver(Assignment("r", "d", spec, {}, Fence(1, 1), {}, created_ms=0), denv)
    await asyncio.wait_for(driver.drive(), 5)
    # b's start (here its end too: the attempt is instant) went in the report with a's end.
    first_of_b = next(report for report in link.reports if "b" in report)
    assert first_of_b.get("a") == "SUCCESS", link.reports
