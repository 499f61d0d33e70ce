"""The Python SDK (``from kiok import Dag, conn, secret``), as in the original kiok.

A ``Dag`` is a plain builder: it writes the same document a YAML author would and hands it
to ``kiok.dag.load``, so SDK, YAML and JSON can never disagree about a DAG. It registers
itself nowhere; ``kiok.compile`` finds every module-level ``Dag`` by scanning the module.
Code here runs once, at compile time, so dates belong in ``#{...}`` placeholders instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, overload

from kiok.dag.load import spec_from_document
from kiok.dag.spec import DagSpec
from kiok.errors import DagValidationError

Duration = str | int
_REF_PART = re.compile(r"^[^\s{}$#]+\Z")


def conn(id: str, key: str) -> str:
    """The reference ``${conn.<id>.<key>}``; the worker resolves it just before the task runs."""
    _check_ref_part(id, "conn id", dots=False)
    _check_ref_part(key, "conn key", dots=True)
    return f"${{conn.{id}.{key}}}"


def secret(name: str) -> str:
    """The reference ``${secret.<name>}``, shorthand for ``${conn.<name>.value}``."""
    _check_ref_part(name, "secret name", dots=False)
    return f"${{secret.{name}}}"


def webhook(url: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A ``notify`` target: an HTTP POST of the run's outcome to ``url`` (``${conn.*}`` and
    ``${secret.*}`` allowed in the url and header values; see ``conn``/``secret``)."""
    body: dict[str, Any] = {"url": url}
    if headers:
        body["headers"] = dict(headers)
    return {"webhook": body}


def email(connection: str, to: str | Iterable[str]) -> dict[str, Any]:
    """A ``notify`` target: a mail through the SMTP server of stored connection ``connection``."""
    return {"email": {"connection": connection, "to": [to] if isinstance(to, str) else list(to)}}


def _check_ref_part(value: object, what: str, *, dots: bool) -> None:
    if not isinstance(value, str) or not _REF_PART.match(value) or (not dots and "." in value):
        raise DagValidationError(f"invalid {what} {value!r}", field=what.replace(" ", "_"))


class Task:
    """One declared task. ``a >> b`` (or ``b << a``) makes ``b`` require ``a``; lists work too."""

    def __init__(self, id: str, fields: dict[str, Any], upstream: list[str]) -> None:
        self.id = id
        self._fields = fields
        self._upstream = upstream

    @property
    def upstream(self) -> tuple[str, ...]:
        return tuple(self._upstream)

    def requires(self, *upstream: str | Task) -> Task:
        """Add upstream tasks; returns ``self`` so calls chain."""
        for u in upstream:
            uid = u.id if isinstance(u, Task) else u
            if uid not in self._upstream:
                self._upstream.append(uid)
        return self

    @overload
    def __rshift__(self, other: Task) -> Task: ...
    @overload
    def __rshift__(self, other: Sequence[Task]) -> Sequence[Task]: ...
    def __rshift__(self, other: Task | Sequence[Task]) -> Task | Sequence[Task]:
        for t in [other] if isinstance(other, Task) else other:
            t.requires(self)
        return other

    def __rrshift__(self, other: Sequence[Task]) -> Task:
        return self.requires(*other)

    @overload
    def __lshift__(self, other: Task) -> Task: ...
    @overload
    def __lshift__(self, other: Sequence[Task]) -> Sequence[Task]: ...
    def __lshift__(self, other: Task | Sequence[Task]) -> Task | Sequence[Task]:
        self.requires(*([other] if isinstance(other, Task) else other))
        return other

    def __rlshift__(self, other: Sequence[Task]) -> Task:
        for t in other:
            t.requires(self)
        return self

    def to_document(self) -> dict[str, Any]:
        doc = {"id": self.id, **self._fields}
        if self._upstream:
            doc["requires"] = list(self._upstream)
        return doc

    def __repr__(self) -> str:
        return f"Task({self.id!r})"


class Dag:
    """A DAG declared in Python; ``name`` is its id (as in the original kiok SDK)."""

    def __init__(
        self,
        name: str,
        schedule: str | None = None,
        catchup: bool = False,
        default_timeout: Duration | None = "5m",
        timezone: str = "UTC",
        max_active_runs: int | None = None,
        labels: Iterable[str] | None = None,
        params: Mapping[str, Any] | None = None,
        description: str = "",
        run_timeout: Duration | None = None,
        sla: Duration | None = None,
        notify: Mapping[str, Sequence[Mapping[str, Any]] | None] | None = None,
        python: str | None = None,
    ) -> None:
        """``notify`` is the YAML block, event -> targets: ``{"on_failure": [webhook(...),
        email(...)], "on_success": [...], "on_sla_miss": [...]}`` (``on_sla_miss`` needs ``sla``)."""
        self.name = name
        self._dag: dict[str, Any] = {
            "id": name,
            "description": description or None,
            "schedule": schedule,
            "timezone": timezone,
            "catchup": catchup,
            "max_active_runs": max_active_runs,
            "default_timeout": default_timeout,
            "labels": list(labels) if labels is not None else None,
            "params": dict(params) if params is not None else None,
            "run_timeout": run_timeout,
            "sla": sla,
            "notify": dict(notify) if notify is not None else None,
            "python": python,
        }
        self._tasks: list[Task] = []

    def task(
        self,
        id: str,
        script: str | None = None,
        task_type: str = "shell",
        requires: Iterable[str | Task] | str | Task | None = None,
        config: Mapping[str, Any] | None = None,
        retries: int = 0,
        retry_delay: Duration | None = None,
        timeout: Duration | None = None,
        trigger_rule: str | None = None,
        retry_exponential_backoff: bool | None = None,
        max_retry_delay: Duration | None = None,
        python: str | None = None,
    ) -> Task:
        """Declare a task and return it (chain with ``>>`` or ``.requires``).

        ``config`` values that are lists or mappings are JSON-encoded, as the original kiok did.
        """
        if any(t.id == id for t in self._tasks):
            raise DagValidationError(f"duplicate task id {id!r} in DAG {self.name!r}", field=f"tasks.{id}.id")
        fields = {
            "type": task_type,
            "script": script,
            "config": dict(config) if config else None,
            "retries": retries,
            "retry_delay": retry_delay,
            "timeout": timeout,
            "trigger_rule": trigger_rule,
            "retry_exponential_backoff": retry_exponential_backoff,
            "max_retry_delay": max_retry_delay,
            "python": python,
        }
        t = Task(id, fields, [])
        if requires is not None:
            t.requires(*([requires] if isinstance(requires, str | Task) else requires))
        self._tasks.append(t)
        return t

    @property
    def tasks(self) -> tuple[Task, ...]:
        return tuple(self._tasks)

    def to_document(self) -> dict[str, Any]:
        """The equivalent YAML/JSON document (nulls mean "default", exactly as in YAML)."""
        return {"dag": dict(self._dag), "tasks": [t.to_document() for t in self._tasks]}

    def to_spec(self) -> DagSpec:
        """The validated spec, checked as registering it is (``python -m kiok.compile`` says
        what ``kiok dags register`` would refuse); raises ``DagValidationError`` naming the
        offending field."""
        return spec_from_document(self.to_document(), registering=True)

    def __repr__(self) -> str:
        return f"Dag({self.name!r}, tasks={[t.id for t in self._tasks]!r})"
