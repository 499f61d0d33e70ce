"""A DAG's ``notify`` block: whom to tell when a run fails, succeeds or misses its ``sla``.

```yaml
dag:
  sla: 10m
  notify:
    on_failure:
      - webhook: {url: "${conn.alerts.url}", headers: {X-Token: "${conn.alerts.token}"}}
      - email: {connection: smtp-main, to: [ops@example.com]}
    on_success: [...]
    on_sla_miss: [...]
```

This module owns the shape (typed targets, parsing with errors that name the field, and
the canonical document ``to_dict`` gives back). Delivery is ``kiok.master.notify``; what is
due when is ``kiok.core.notify``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kiok.errors import DagValidationError


class NotifyEvent(StrEnum):
    ON_FAILURE = "on_failure"
    ON_SUCCESS = "on_success"
    ON_SLA_MISS = "on_sla_miss"


@dataclass(frozen=True)
class WebhookTarget:
    """An HTTP POST of a JSON body; ``url`` and header values may hold ``${conn.*}``/``${secret.*}``."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"url": self.url}
        if self.headers:
            body["headers"] = dict(self.headers)
        return {"webhook": body}

    def describe(self) -> str:
        return "webhook"


@dataclass(frozen=True)
class EmailTarget:
    """A mail through the SMTP server of connection ``connection`` (type ``smtp``)."""

    connection: str
    to: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"email": {"connection": self.connection, "to": list(self.to)}}

    def describe(self) -> str:
        return f"email to {', '.join(self.to)}"


NotifyTarget = WebhookTarget | EmailTarget


@dataclass(frozen=True)
class NotifySpec:
    on_failure: tuple[NotifyTarget, ...] = ()
    on_success: tuple[NotifyTarget, ...] = ()
    on_sla_miss: tuple[NotifyTarget, ...] = ()

    def targets(self, event: NotifyEvent) -> tuple[NotifyTarget, ...]:
        return {
            NotifyEvent.ON_FAILURE: self.on_failure,
            NotifyEvent.ON_SUCCESS: self.on_success,
            NotifyEvent.ON_SLA_MISS: self.on_sla_miss,
        }[event]

    def __bool__(self) -> bool:
        return bool(self.on_failure or self.on_success or self.on_sla_miss)

    def to_dict(self) -> dict[str, Any]:
        return {e.value: [t.to_dict() for t in self.targets(e)] for e in NotifyEvent if self.targets(e)}


_EMAIL = re.compile(r"^[^@\s,<>]+@[^@\s,<>]+\Z")
_CONN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}\Z")
_PLACEHOLDER = ("${", "#{")


def parse_notify(raw: object, at: str = "dag.notify") -> NotifySpec:
    """The typed block for a parsed ``notify`` mapping; ``DagValidationError`` naming the field."""
    if raw is None:
        return NotifySpec()
    if not isinstance(raw, Mapping):
        raise DagValidationError("expected a mapping of on_failure/on_success/on_sla_miss", field=at)
    allowed = [e.value for e in NotifyEvent]
    lists: dict[str, tuple[NotifyTarget, ...]] = {}
    for key, targets in raw.items():
        if key not in allowed:
            raise DagValidationError(
                f"unknown key {key!r}; allowed: {', '.join(allowed)}", field=f"{at}.{key}"
            )
        if targets is None:
            continue
        if not isinstance(targets, list):
            raise DagValidationError("expected a list of {webhook: ...} or {email: ...}", field=f"{at}.{key}")
        lists[key] = tuple(_target(t, f"{at}.{key}[{i}]") for i, t in enumerate(targets))
    return NotifySpec(**lists)


def _target(raw: object, at: str) -> NotifyTarget:
    if not isinstance(raw, Mapping) or len(raw) != 1 or next(iter(raw)) not in ("webhook", "email"):
        raise DagValidationError(
            "each target is {webhook: {url, headers}} or {email: {connection, to}}", field=at
        )
    kind, body = next(iter(raw.items()))
    if not isinstance(body, Mapping):
        raise DagValidationError("expected a mapping", field=f"{at}.{kind}")
    at = f"{at}.{kind}"
    if kind == "webhook":
        _only(body, ("url", "headers"), at)
        url = body.get("url")
        if not isinstance(url, str) or not url.strip():
            raise DagValidationError("a webhook needs a url", field=f"{at}.url")
        if not url.startswith(("http://", "https://", *_PLACEHOLDER)):
            raise DagValidationError(
                f"url must start with http:// or https://, got {url!r}", field=f"{at}.url"
            )
        headers = body.get("headers") or {}
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise DagValidationError("headers map names to string values", field=f"{at}.headers")
        return WebhookTarget(url=url, headers=dict(headers))
    _only(body, ("connection", "to"), at)
    conn = body.get("connection")
    if not isinstance(conn, str) or not _CONN_ID.match(conn):
        raise DagValidationError(
            f"connection names a stored connection of type smtp, got {conn!r}", field=f"{at}.connection"
        )
    to = body.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to:
        raise DagValidationError("to is a non-empty list of addresses", field=f"{at}.to")
    for i, addr in enumerate(to):
        if not isinstance(addr, str) or not _EMAIL.match(addr):
            raise DagValidationError(f"not an email address: {addr!r}", field=f"{at}.to[{i}]")
    return EmailTarget(connection=conn, to=tuple(to))


def _only(body: Mapping[Any, Any], keys: tuple[str, ...], at: str) -> None:
    for key in body:
        if key not in keys:
            raise DagValidationError(f"unknown key {key!r}; allowed: {', '.join(keys)}", field=f"{at}.{key}")
