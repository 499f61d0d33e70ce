"""Notifications without I/O: the ``notify`` block's shape and round trip, the pure decisions
(SLA, backoff, smtp properties) and the outbox ``apply()`` keeps (recorded with the run's end,
SLA flagged once, removed when finished)."""

from __future__ import annotations

from typing import Any

import pytest

from kiok.core.notify import Notification, SmtpConnection, retry_delay_ms, sla_missed, sla_start_ms
from kiok.core.run_clock import started_ms
from kiok.core.states import TaskRecord, TaskState
from kiok.dag.load import spec_from_document, spec_from_yaml
from kiok.dag.notify import EmailTarget, NotifyEvent, WebhookTarget
from kiok.errors import DagValidationError
from kiok.store import commands as c
from kiok.store import keys
from kiok.store.commandlog import LocalCommandLog
from kiok.store.kv import MemoryKV
from kiok.store.reader import StateReader

YAML = """
dag:
  id: d
  sla: 10m
  notify:
    on_failure:
      - webhook: {url: "${conn.alerts.url}", headers: {X-T: "${secret.tok}"}}
      - email: {connection: smtp-main, to: ops@example.com}
    on_sla_miss: [{webhook: {url: "https://h/sla"}}]
tasks: [{id: a, script: "true"}]
"""


def test_the_block_parses_to_typed_targets_and_round_trips() -> None:
    spec = spec_from_yaml(YAML)
    assert spec.sla_ms == 600_000
    assert spec.notify.on_failure == (
        WebhookTarget("${conn.alerts.url}", {"X-T": "${secret.tok}"}),
        EmailTarget("smtp-main", ("ops@example.com",)),
    )
    assert spec.notify.on_success == ()
    assert spec_from_document(spec.to_dict()) == spec


def test_a_dag_without_the_block_is_unchanged() -> None:
    doc = spec_from_yaml("dag: {id: d}\ntasks: [{id: a, script: 'true'}]").to_dict()
    assert "notify" not in doc["dag"] and "sla" not in doc["dag"]


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ("[]", "dag.notify"),
        ("{on_failure: {webhook: {url: 'http://x'}}}", "dag.notify.on_failure"),
        (
            "{on_failure: [{webhook: {url: 'http://x', method: GET}}]}",
            "dag.notify.on_failure[0].webhook.method",
        ),
        (
            "{on_failure: [{email: {connection: 'a.b', to: [x@y.z]}}]}",
            "dag.notify.on_failure[0].email.connection",
        ),
        ("{on_failure: [{email: {connection: m, to: []}}]}", "dag.notify.on_failure[0].email.to"),
    ],
)
def test_bad_blocks_name_the_field(block: str, field: str) -> None:
    with pytest.raises(DagValidationError) as e:
        spec_from_yaml(f"dag: {{id: d, notify: {block}}}\ntasks: [{{id: a, script: 'true'}}]")
    assert e.value.field == field


def test_sla_must_be_positive() -> None:
    with pytest.raises(DagValidationError) as e:
        spec_from_yaml("dag: {id: d, sla: 0s}\ntasks: [{id: a, script: 'true'}]")
    assert e.value.field == "dag.sla"


def test_sla_is_measured_from_the_start_or_creation_and_flagged_once() -> None:
    run: dict[str, Any] = {"createdMs": 0, "startedMs": 1000, "endedMs": None}
    assert not sla_missed(run, 500, 1500)
    assert sla_missed(run, 500, 1501)
    assert sla_missed({"createdMs": 0, "startedMs": None}, 500, 501)  # never got a worker
    assert not sla_missed({**run, "slaMissed": True}, 500, 9999)
    assert not sla_missed({**run, "endedMs": 1400}, 500, 9999)  # ended in time
    assert sla_missed({**run, "endedMs": 1600}, 500, 1600)
    assert not sla_missed(run, None, 10**9)


def test_a_reruns_sla_is_measured_from_the_rerun() -> None:
    # Started at 0 with a 10 s SLA, re-run at 100 s: the re-run got its driver at 100.5 s.
    rerun: dict[str, Any] = {
        "createdMs": 0,
        "startedMs": 0,
        "endedMs": None,
        "state": "RUNNING",
        "lastRerun": {"atMs": 100_000, "startedMs": 100_500, "freshSla": True},
    }
    assert not sla_missed(rerun, 10_000, 105_000)
    assert not sla_missed(rerun, 10_000, 110_500)
    assert sla_missed(rerun, 10_000, 111_000)
    # Waiting its turn (PENDING): from the request, as a fresh run counts from its creation.
    waiting = {**rerun, "state": "PENDING", "lastRerun": {"atMs": 100_000, "freshSla": True}}
    assert sla_start_ms(waiting) == 100_000 and sla_missed(waiting, 10_000, 110_001)
    assert sla_start_ms({**waiting, "startedMs": None}) == 100_000  # cancelled before it ever started
    # Cancelled while it waited its turn: it never started, and the miss says so.
    cancelled = {**rerun, "state": "CANCELLED", "lastRerun": {"atMs": 100_000, "freshSla": True}}
    assert sla_start_ms(cancelled) == 100_000 and started_ms(cancelled) is None
    # Logged before RerunRun had fresh_sla: measured as it then was (apply() decides with it).
    assert sla_start_ms({**rerun, "lastRerun": {"atMs": 100_000, "startedMs": 100_500}}) == 0
    assert sla_start_ms({**waiting, "startedMs": None, "lastRerun": {"atMs": 100_000}}) == 0


def test_retry_delay_doubles_up_to_the_cap() -> None:
    assert [retry_delay_ms(a, 100, 500) for a in range(1, 6)] == [100, 200, 400, 500, 500]


def test_smtp_properties() -> None:
    conn = SmtpConnection.from_properties(
        {"host": "mx", "starttls": "true", "user": "me@x.io", "password": "p"}
    )
    assert (conn.port, conn.starttls, conn.sender) == (587, True, "me@x.io")
    assert SmtpConnection.from_properties({"host": "mx", "ssl": "yes", "from": "a@b"}).port == 465
    for props, words in [
        ({"port": "25", "from": "a@b"}, "host"),
        ({"host": "mx", "port": "x", "from": "a@b"}, "port"),
        ({"host": "mx", "port": "\u0661\u0662", "from": "a@b"}, "port"),  # Arabic-Indic 12
        ({"host": "mx"}, "from"),
        ({"host": "mx", "from": "a@b", "tls": "1"}, "unknown"),
        ({"host": "mx", "from": "a@b", "ssl": "1", "starttls": "1"}, "not both"),
    ]:
        with pytest.raises(ValueError, match=words):
            SmtpConnection.from_properties(props)


SPEC = spec_from_yaml(YAML).to_dict()


async def _failed_run(sla_at_end: bool = False) -> tuple[LocalCommandLog, StateReader, str]:
    kv = MemoryKV(keys.SPACES)
    log, reader = LocalCommandLog(kv), StateReader(kv)
    await log.propose(c.RegisterDag(at_ms=1, spec=SPEC))
    run_id = (await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"]
    fence = await log.propose(c.AssignRun(at_ms=3, run_id=run_id, worker="w", term=1))
    end = 3 + 600_001 if sla_at_end else 10
    failed = TaskRecord(state=TaskState.FAILED, attempt=1, worker="w", ended_at_ms=end).to_dict()
    await log.propose(
        c.ReportTasks(at_ms=end, run_id=run_id, term=1, epoch=fence["epoch"], tasks={"a": failed}, worker="w")
    )
    return log, reader, run_id


async def test_a_failed_run_records_its_failure_notifications_with_its_end() -> None:
    log, reader, run_id = await _failed_run()
    due = [Notification.from_dict(n) for n in reader.notifications()]
    assert [(n.event, n.target) for n in due] == [
        (NotifyEvent.ON_FAILURE, t) for t in spec_from_document(SPEC).notify.on_failure
    ]
    assert {n.state for n in due} == {"FAILED"} and all(n.run_id == run_id for n in due)
    assert (await log.propose(c.FinishNotification(at_ms=20, key=due[0].key, delivered=True)))["finished"]
    assert not (await log.propose(c.FinishNotification(at_ms=21, key=due[0].key, delivered=True)))["finished"]
    assert [n["key"] for n in reader.notifications()] == [due[1].key]


async def test_a_run_that_ended_past_its_sla_unflagged_records_the_miss_too() -> None:
    _, reader, run_id = await _failed_run(sla_at_end=True)
    events = sorted(n["event"] for n in reader.notifications())
    assert events == ["on_failure", "on_failure", "on_sla_miss"]
    assert (reader.run_header(run_id) or {})["slaMissed"] is True


async def test_an_sla_miss_is_flagged_once_and_never_for_a_run_within_its_sla() -> None:
    kv = MemoryKV(keys.SPACES)
    log, reader = LocalCommandLog(kv), StateReader(kv)
    await log.propose(c.RegisterDag(at_ms=1, spec=SPEC))
    run_id = (await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"]
    assert not (await log.propose(c.NotifySlaMiss(at_ms=1000, run_id=run_id)))["flagged"]
    assert (await log.propose(c.NotifySlaMiss(at_ms=700_000, run_id=run_id)))["flagged"]
    assert not (await log.propose(c.NotifySlaMiss(at_ms=700_001, run_id=run_id)))["flagged"]
    assert [n["event"] for n in reader.notifications()] == ["on_sla_miss"]


async def test_a_flagged_run_that_is_rerun_can_miss_its_sla_again() -> None:
    kv = MemoryKV(keys.SPACES)
    log, reader = LocalCommandLog(kv), StateReader(kv)
    await log.propose(c.RegisterDag(at_ms=1, spec=SPEC))
    run_id = (await log.propose(c.CreateRun(at_ms=2, dag_id="d")))["runId"]
    fence = await log.propose(c.AssignRun(at_ms=3, run_id=run_id, worker="w", term=1))
    assert (await log.propose(c.NotifySlaMiss(at_ms=700_000, run_id=run_id)))["flagged"]
    done = TaskRecord(state=TaskState.SUCCESS, attempt=1, worker="w", ended_at_ms=700_010).to_dict()
    await log.propose(
        c.ReportTasks(
            at_ms=700_010, run_id=run_id, term=1, epoch=fence["epoch"], tasks={"a": done}, worker="w"
        )
    )
    for n in reader.notifications():
        await log.propose(c.FinishNotification(at_ms=700_020, key=n["key"], delivered=True))
    await log.propose(
        c.RerunRun(at_ms=800_000, run_id=run_id, only_failed=False, by="u", queued=True, fresh_sla=True)
    )
    header = reader.run_header(run_id) or {}
    assert not header.get("slaMissed") and header["endedMs"] is None
    # Waiting for a driver counts from the request; once it has one, from the re-run's start.
    assert not (await log.propose(c.NotifySlaMiss(at_ms=1000_000, run_id=run_id)))["flagged"]
    await log.propose(c.AssignRun(at_ms=1000_000, run_id=run_id, worker="w", term=1))
    assert not (await log.propose(c.NotifySlaMiss(at_ms=1400_001, run_id=run_id)))["flagged"]
    assert (await log.propose(c.NotifySlaMiss(at_ms=1600_001, run_id=run_id)))["flagged"]
    assert [(n["event"], n["atMs"]) for n in reader.notifications()] == [("on_sla_miss", 1600_001)]


async def test_a_rerun_that_ends_past_its_sla_records_the_miss_again() -> None:
    log, reader, run_id = await _failed_run(sla_at_end=True)  # flagged at its end
    for n in reader.notifications():
        await log.propose(c.FinishNotification(at_ms=600_010, key=n["key"], delivered=True))
    await log.propose(c.RerunRun(at_ms=700_000, run_id=run_id, by="u", queued=True, fresh_sla=True))
    fence = await log.propose(c.AssignRun(at_ms=700_100, run_id=run_id, worker="w", term=1))
    end = 700_100 + 600_001
    failed = TaskRecord(state=TaskState.FAILED, attempt=2, worker="w", ended_at_ms=end).to_dict()
    await log.propose(
        c.ReportTasks(at_ms=end, run_id=run_id, term=1, epoch=fence["epoch"], tasks={"a": failed}, worker="w")
    )
    assert [n["atMs"] for n in reader.notifications() if n["event"] == "on_sla_miss"] == [end]
    assert (reader.run_header(run_id) or {})["slaMissed"] is True


async def test_a_rerun_logged_before_fresh_sla_applies_as_it_did() -> None:
    log, reader, run_id = await _failed_run(sla_at_end=True)  # flagged at its end
    await log.propose(c.RerunRun(at_ms=700_000, run_id=run_id, by="u", queued=True))
    assert (reader.run_header(run_id) or {})["slaMissed"] is True
    assert not (await log.propose(c.NotifySlaMiss(at_ms=2000_000, run_id=run_id)))["flagged"]


async def test_a_reruns_notifications_never_replace_the_undelivered_ones_of_the_run_before_it() -> None:
    """A run fails and its on_failure webhooks are still being retried when it is re-run and
    fails again: both failures are told, the second dated from the re-run's start."""
    log, reader, run_id = await _failed_run()
    first = {n["key"]: n for n in reader.notifications()}
    await log.propose(c.RerunRun(at_ms=700_000, run_id=run_id, by="u", queued=True, fresh_sla=True))
    fence = await log.propose(c.AssignRun(at_ms=700_100, run_id=run_id, worker="w", term=1))
    failed = TaskRecord(state=TaskState.FAILED, attempt=2, worker="w", ended_at_ms=700_200).to_dict()
    await log.propose(
        c.ReportTasks(
            at_ms=700_200, run_id=run_id, term=1, epoch=fence["epoch"], tasks={"a": failed}, worker="w"
        )
    )
    now = {n["key"]: n for n in reader.notifications()}
    assert all(now[key] == n for key, n in first.items())  # still there, unchanged
    second = [n for key, n in now.items() if key not in first]
    assert len(second) == len(first) and {n["event"] for n in second} == {"on_failure"}
    assert {(n["startedMs"], n["endedMs"]) for n in second} == {(700_100, 700_200)}
    assert {(n["startedMs"], n["endedMs"]) for n in first.values()} == {(3, 10)}


def test_a_url_error_of_a_webhook_quotes_nothing_of_its_url() -> None:
    """Found by the security re-probe (session 27): a webhook URL whose password holds ``#``
    failed with ``Invalid port: 'Sup3rS3cretPw'`` in the run log and kiok's log: a piece of
    a connection value, which masking (whole values) let through."""
    import httpx

    from kiok.master.notify import _describe

    assert _describe(httpx.InvalidURL("Invalid port: 'Sup3rS3cretPw'")) == "InvalidURL: Invalid port: '…'"
    # A piece holding both quotes, escaped by repr: nothing past the first quote is shown.
    assert _describe(httpx.InvalidURL("Invalid port: 'Ab\\'c\"De'")) == "InvalidURL: Invalid port: '…'"
