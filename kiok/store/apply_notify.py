"""The notification half of ``apply()``: recording due notifications in the outbox (when a
run ends, when it misses its SLA) and removing delivered ones. Decisions come from
``kiok.core.notify``; delivery is the leader's (``kiok.master.notify``).

Entries live under ``notify/<run>/<event>/<i>`` in the meta keyspace (a re-run's under
``notify/<run>/r<n>/<event>/<i>``: ``keys.notification``), written in the same
command that ends the run, so a due notification is as durable as the run's end itself.
"""

from __future__ import annotations

from typing import Any

from kiok.core.notify import due, execution, run_end_event, sla_missed
from kiok.core.states import TERMINAL_RUN_STATES
from kiok.dag.load import compiled_spec
from kiok.dag.notify import NotifyEvent, NotifyTarget
from kiok.store import commands as c
from kiok.store import keys as k
from kiok.store.effects import Effects
from kiok.store.txn import Txn


def on_run_end(txn: Txn, run: dict[str, Any], at_ms: int) -> None:
    """Record the notifications a run that has just ended makes due (its header is written
    by the caller): its end event's, and ``on_sla_miss`` if it ended past its SLA unflagged."""
    doc = txn.get(k.META, k.run_spec(run["runId"]))
    if not isinstance(doc, dict) or not ({"notify", "sla"} & doc.get("dag", {}).keys()):
        return  # the common case: nothing to tell anyone, and no spec compiled for it
    spec = compiled_spec(doc)
    if sla_missed(run, spec.sla_ms, at_ms):
        _record(txn, run, NotifyEvent.ON_SLA_MISS, spec.notify.on_sla_miss, at_ms, spec.sla_ms)
        run["slaMissed"] = True
    event = run_end_event(run["state"])
    if event is not None:
        _record(txn, run, event, spec.notify.targets(event), at_ms, spec.sla_ms)


def apply_sla_miss(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.NotifySlaMiss)
    run = txn.get(k.META, k.run(cmd.run_id))
    if not isinstance(run, dict) or run.get("slaMissed") or run["state"] in TERMINAL_RUN_STATES:
        return {"flagged": False}  # gone, flagged already, or its end recorded it
    spec = compiled_spec(txn.get(k.META, k.run_spec(cmd.run_id)))
    if not sla_missed(run, spec.sla_ms, cmd.at_ms):
        return {"flagged": False}
    run["slaMissed"] = True
    txn.put(k.META, k.run(cmd.run_id), run)
    fx.runs_changed.add(cmd.run_id)
    return {
        "flagged": True,
        "notifications": _record(
            txn, run, NotifyEvent.ON_SLA_MISS, spec.notify.on_sla_miss, cmd.at_ms, spec.sla_ms
        ),
    }


def apply_finish_notification(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    assert isinstance(cmd, c.FinishNotification)
    if not cmd.key.startswith(k.NOTIFY_PREFIX) or txn.get(k.META, cmd.key) is None:
        return {"finished": False}
    txn.delete(k.META, cmd.key)
    return {"finished": True}


def _record(
    txn: Txn,
    run: dict[str, Any],
    event: NotifyEvent,
    targets: tuple[NotifyTarget, ...],
    at_ms: int,
    sla_ms: int | None,
) -> int:
    rerun = execution(run)
    entries = due(
        run, targets, event, lambda i: k.notification(run["runId"], event.value, i, rerun), at_ms, sla_ms
    )
    for n in entries:
        txn.put(k.META, n.key, n.to_dict())
    return len(entries)
