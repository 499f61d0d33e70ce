"""Notification decisions, without I/O: which notifications a run's end or its SLA makes due,
what each one says, when a failed delivery is tried again, and what an ``smtp`` connection holds.

Theory of operation: ``apply()`` records a due notification as an outbox entry in the store
(``kiok.store.apply_notify``) in the same command that ends the run, or in ``NotifySlaMiss``;
the leader's ``kiok.master.notify.Notifier`` delivers entries and removes each with
``FinishNotification``. A leader that dies between delivering and removing leaves the entry for
the next leader: delivery is at least once, never lost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kiok.core.run_clock import requested_ms, started_ms
from kiok.core.states import RunState
from kiok.core.timefmt import iso_utc
from kiok.dag.notify import NotifyEvent, NotifyTarget, parse_notify


def run_end_event(state: str) -> NotifyEvent | None:
    """The event a run ending in ``state`` raises (a cancelled run raises none: someone chose it)."""
    if state == RunState.SUCCESS.value:
        return NotifyEvent.ON_SUCCESS
    if state == RunState.FAILED.value:
        return NotifyEvent.ON_FAILURE
    return None


def sla_start_ms(run: Mapping[str, Any]) -> int:
    """Where a run's SLA is measured from (``kiok.core.run_clock``): its start, or its last
    re-run's, or while it waits for a driver, when it was asked for (a run that never gets one
    misses its SLA too). ``apply()`` decides with it, so a re-run logged before ``RerunRun``
    had ``fresh_sla`` is measured as it then was on every master: from the first start."""
    rerun = run.get("lastRerun")
    if rerun is None or rerun.get("freshSla"):
        started = started_ms(run)
        return requested_ms(run) if started is None else started
    first = run.get("startedMs")
    return int(first if first is not None else run["createdMs"])


def execution(run: Mapping[str, Any]) -> int:
    """Which execution of ``run`` its notifications are about: 0, or the number of its last
    re-run when that re-run measures its own SLA (``lastRerun.freshSla``) and so has
    notifications of its own, dated from its own start. Re-runs logged before then share
    the run's (``apply()`` decides with it: every master must agree on the entries)."""
    rerun = run.get("lastRerun")
    return int(run.get("reruns", 0)) if rerun is not None and rerun.get("freshSla") else 0


def sla_missed(run: Mapping[str, Any], sla_ms: int | None, now_ms: int) -> bool:
    """Whether ``run`` (a header) has missed ``sla_ms`` at ``now_ms`` and was not yet flagged.
    A finished run missed it when it ended later than the SLA allowed."""
    if sla_ms is None or run.get("slaMissed"):
        return False
    end = run.get("endedMs")
    return (now_ms if end is None else int(end)) - sla_start_ms(run) > sla_ms


def retry_delay_ms(attempt: int, initial_ms: int, max_ms: int) -> int:
    """Delay after failed attempt ``attempt`` (1-based): doubling from ``initial_ms``, capped."""
    return int(min(max_ms, initial_ms * 2 ** min(attempt - 1, 30)))


@dataclass(frozen=True)
class Notification:
    """One due notification: an outbox entry, everything delivery needs (the target is copied
    from the run's spec, so re-registering the DAG does not change what is sent)."""

    key: str
    run_id: str
    dag_id: str
    event: NotifyEvent
    target: NotifyTarget
    state: str
    trigger: str
    created_ms: int
    started_ms: int | None
    ended_ms: int | None
    at_ms: int
    sla_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "runId": self.run_id,
            "dagId": self.dag_id,
            "event": self.event.value,
            "target": self.target.to_dict(),
            "state": self.state,
            "trigger": self.trigger,
            "createdMs": self.created_ms,
            "startedMs": self.started_ms,
            "endedMs": self.ended_ms,
            "atMs": self.at_ms,
            "slaMs": self.sla_ms,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Notification:
        event = NotifyEvent(d["event"])
        (target,) = parse_notify({event.value: [d["target"]]}).targets(event)
        return cls(
            key=d["key"],
            run_id=d["runId"],
            dag_id=d["dagId"],
            event=event,
            target=target,
            state=d["state"],
            trigger=d.get("trigger", ""),
            created_ms=d["createdMs"],
            started_ms=d.get("startedMs"),
            ended_ms=d.get("endedMs"),
            at_ms=d["atMs"],
            sla_ms=d.get("slaMs"),
        )

    @property
    def label(self) -> str:
        """How the run log names it: ``notification on_failure → webhook``."""
        return f"notification {self.event.value} → {self.target.describe()}"


def due(
    run: Mapping[str, Any],
    targets: tuple[NotifyTarget, ...],
    event: NotifyEvent,
    key_of: Callable[[int], str],
    at_ms: int,
    sla_ms: int | None,
) -> list[Notification]:
    """The notifications ``event`` on ``run`` (a header) makes due, one per target;
    ``key_of(index)`` names each one's outbox key."""
    return [
        Notification(
            key=key_of(i),
            run_id=run["runId"],
            dag_id=run["dagId"],
            event=event,
            target=target,
            state=run["state"],
            trigger=run.get("trigger", ""),
            created_ms=run["createdMs"],
            started_ms=started_ms(run) if execution(run) else run.get("startedMs"),
            ended_ms=run.get("endedMs"),
            at_ms=at_ms,
            sla_ms=sla_ms,
        )
        for i, target in enumerate(targets)
    ]


def reason(n: Notification, failed_tasks: Mapping[str, str | None]) -> str:
    """One sentence on why this notification was sent; ``failed_tasks``: task id -> error."""
    if n.event is NotifyEvent.ON_SLA_MISS:
        return f"not finished within its sla of {_duration(n.sla_ms or 0)}"
    if n.event is NotifyEvent.ON_SUCCESS:
        return "every task succeeded or was skipped"
    if not failed_tasks:
        return "the run failed"
    parts = [f"{tid}: {err}" if err else tid for tid, err in sorted(failed_tasks.items())[:5]]
    more = f" (and {len(failed_tasks) - 5} more)" if len(failed_tasks) > 5 else ""
    return "failed task(s) " + "; ".join(parts) + more


def payload(n: Notification, why: str, link: str) -> dict[str, Any]:
    """The JSON body of a webhook (and the facts of an email)."""
    return {
        "event": n.event.value,
        "dagId": n.dag_id,
        "runId": n.run_id,
        "state": n.state,
        "reason": why,
        "trigger": n.trigger,
        "createdAt": iso_utc(n.created_ms),
        "startedAt": None if n.started_ms is None else iso_utc(n.started_ms),
        "endedAt": None if n.ended_ms is None else iso_utc(n.ended_ms),
        "notifiedAt": iso_utc(n.at_ms),
        "url": link,
    }


def email_text(n: Notification, body: Mapping[str, Any]) -> tuple[str, str]:
    """(subject, plain-text body) of a notification mail."""
    what = "missed its SLA" if n.event is NotifyEvent.ON_SLA_MISS else n.state
    subject = f"[kiok] {n.dag_id}: run {n.run_id} {what}"
    lines = [f"{k}: {v}" for k, v in body.items() if v is not None]
    return subject, "\n".join(lines) + "\n"


def _duration(ms: int) -> str:
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


@dataclass(frozen=True)
class SmtpConnection:
    """A connection of type ``smtp``: properties host, port, user, password, starttls, ssl, from."""

    host: str
    port: int
    user: str
    password: str
    starttls: bool
    ssl: bool
    sender: str

    @classmethod
    def from_properties(cls, props: Mapping[str, str]) -> SmtpConnection:
        """Raises ``ValueError`` naming the property that is missing or wrong."""
        known = {"host", "port", "user", "password", "starttls", "ssl", "from"}
        unknown = sorted(set(props) - known)
        if unknown:
            raise ValueError(f"unknown smtp properties {unknown}; known: {sorted(known)}")
        for name in ("host", "port", "user", "from"):  # they go into SMTP commands and headers
            if any(ch < " " or ch == "\x7f" for ch in props.get(name, "")):
                raise ValueError(f"{name} must not hold a line break or another control character")
        host = props.get("host", "").strip()
        if not host:
            raise ValueError("an smtp connection needs the property host")
        starttls, ssl = _flag(props, "starttls"), _flag(props, "ssl")
        if starttls and ssl:
            raise ValueError("set starttls or ssl, not both")
        port_text = props.get("port") or ("465" if ssl else "587" if starttls else "25")
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            raise ValueError(f"port must be a number from 1 to 65535, got {port_text!r}")
        user = props.get("user", "")
        sender = props.get("from") or user
        if "@" not in sender:
            raise ValueError("an smtp connection needs the property from (an address), or a user that is one")
        return cls(host, int(port_text), user, props.get("password", ""), starttls, ssl, sender)


def _flag(props: Mapping[str, str], name: str) -> bool:
    value = props.get(name, "false").strip().lower()
    if value not in ("true", "false", "yes", "no", "1", "0", ""):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value in ("true", "yes", "1")
