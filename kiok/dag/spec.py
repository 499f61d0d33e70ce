"""The compiled DAG: one immutable ``DagSpec`` that YAML, JSON and the Python SDK all produce.

The scheduler, coordinator, driver and API see only this type. ``to_dict`` gives the
canonical document (the same shape a user writes in YAML/JSON), which is what the store
keeps and what ``kiok.dag.load.spec_from_document`` reads back: ``load(spec.to_dict()) == spec``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kiok.core.placeholders import references, shell_restricted_params
from kiok.core.placement import Restriction
from kiok.dag.notify import NotifyEvent, NotifySpec, WebhookTarget
from kiok.dag.params import ParamRule, plain_default_document
from kiok.ids import DagId, TaskId


class TaskType(StrEnum):
    SHELL = "shell"
    PYTHON = "python"
    HTTP = "http"


class TriggerRule(StrEnum):
    """When a task may run, given its upstreams' terminal states (DESIGN.md §3)."""

    ALL_SUCCESS = "all_success"
    ALL_DONE = "all_done"
    ONE_FAILED = "one_failed"
    ALL_FAILED = "all_failed"


DEFAULT_RETRY_DELAY_MS = 10_000
DEFAULT_MAX_ACTIVE_RUNS = 16


@dataclass(frozen=True)
class TaskSpec:
    id: TaskId
    type: TaskType = TaskType.SHELL
    #: Body for shell/python tasks; ``None`` for http (which uses ``config.url``).
    script: str | None = None
    requires: tuple[TaskId, ...] = ()
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    retries: int = 0
    retry_delay_ms: int = DEFAULT_RETRY_DELAY_MS
    #: Exponential backoff doubles the delay for every further attempt, capped by
    #: ``max_retry_delay_ms`` (None: the cluster cap ``kiok.scheduler.retry.max.delay.ms``).
    retry_exponential_backoff: bool = True
    max_retry_delay_ms: int | None = None
    timeout_ms: int | None = None
    #: A flat string map, as in the original kiok: list/map values are JSON-encoded on ingest.
    config: Mapping[str, str] = field(default_factory=dict)
    #: The interpreter of a python task (absolute path); ``None``: the DAG's, else the worker's.
    python: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "type": self.type.value}
        if self.script is not None:
            d["script"] = self.script
        if self.requires:
            d["requires"] = list(self.requires)
        if self.trigger_rule is not TriggerRule.ALL_SUCCESS:
            d["trigger_rule"] = self.trigger_rule.value
        if self.retries:
            d["retries"] = self.retries
        if self.retry_delay_ms != DEFAULT_RETRY_DELAY_MS:
            d["retry_delay"] = f"{self.retry_delay_ms}ms"
        if not self.retry_exponential_backoff:
            d["retry_exponential_backoff"] = False
        if self.max_retry_delay_ms is not None:
            d["max_retry_delay"] = f"{self.max_retry_delay_ms}ms"
        if self.timeout_ms is not None:
            d["timeout"] = f"{self.timeout_ms}ms"
        if self.config:
            d["config"] = dict(self.config)
        if self.python is not None:
            d["python"] = self.python
        return d


@dataclass(frozen=True)
class DagSpec:
    id: DagId
    tasks: tuple[TaskSpec, ...]
    name: str = ""
    description: str = ""
    #: 5-field cron; ``None`` means manual-only.
    schedule: str | None = None
    timezone: str = "UTC"
    catchup: bool = False
    max_active_runs: int = DEFAULT_MAX_ACTIVE_RUNS
    default_timeout_ms: int | None = None
    #: A run not finished this long after it started is failed by the leader (its tasks
    #: cancelled); ``None``: no limit.
    run_timeout_ms: int | None = None
    #: How long finished runs (with their task records and logs) are kept; ``None``: as
    #: ``kiok.retention.runs.days`` says.
    retention_ms: int | None = None
    #: Normalised: lower-case, sorted, no duplicates.
    labels: tuple[str, ...] = ()
    #: Defaults for ``${params.x}``; trigger args override them.
    params: Mapping[str, Any] = field(default_factory=dict)
    #: Constraints on params declared as ``{default, type, enum, ...}`` (``kiok.dag.params``);
    #: a declared param without a default is in here only.
    param_rules: Mapping[str, ParamRule] = field(default_factory=dict)
    #: Whether a trigger may pass args the DAG does not declare.
    allow_extra_args: bool = False
    #: Who is told when a run fails, succeeds or misses ``sla_ms`` (``kiok.dag.notify``).
    notify: NotifySpec = field(default_factory=NotifySpec)
    #: A run not finished this long after it started has missed its SLA (``on_sla_miss``).
    sla_ms: int | None = None
    #: The interpreter of its python tasks that name none (absolute path); ``None``: the
    #: worker's (``kiok.python.path``).
    python: str | None = None

    @functools.cached_property
    def _by_id(self) -> dict[str, TaskSpec]:
        return {t.id: t for t in self.tasks}

    def task(self, task_id: str) -> TaskSpec:
        """The task with this id; ``KeyError`` when there is none."""
        return self._by_id[task_id]

    @functools.cached_property
    def shell_restrictions(self) -> Mapping[str, tuple[TaskId, Restriction]]:
        """Param name -> a shell task that places it where bash reads its value again, and
        what the value may hold there (``kiok.core.placement``): the API refuses a trigger
        that passes anything else, rather than letting its attempts fail."""
        found: dict[str, tuple[TaskId, Restriction]] = {}
        for t in self.tasks:
            if t.type is TaskType.SHELL and t.script:
                for name, restriction in sorted(shell_restricted_params(t.script).items()):
                    if name not in found or restriction > found[name][1]:
                        found[name] = (t.id, restriction)
        return found

    @functools.cached_property
    def has_shell_tasks(self) -> bool:
        return any(t.type is TaskType.SHELL for t in self.tasks)

    def python_for(self, task: TaskSpec) -> str | None:
        """The interpreter ``task`` names, else the DAG's; ``None``: the worker's own."""
        return task.python if task.python is not None else self.python

    def connections_used(self) -> frozenset[str]:
        """The connections whose values this DAG's runs can reach: referred to in its tasks'
        scripts and config (``${conn.<id>.<key>}``, ``${secret.<id>}``) and its webhooks' URLs
        and headers, or named by its email notifications. A DAG author can send any of them
        anywhere, so registering the DAG needs ``connections:Use`` on each."""
        texts = [text for t in self.tasks for text in (t.script or "", *t.config.values())]
        used = set()
        for event in NotifyEvent:
            for target in self.notify.targets(event):
                if isinstance(target, WebhookTarget):
                    texts += [target.url, *target.headers.values()]
                else:
                    used.add(target.connection)
        return frozenset(used | {conn_id for text in texts for conn_id, _ in references(text)})

    @property
    def task_ids(self) -> tuple[TaskId, ...]:
        return tuple(t.id for t in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        dag: dict[str, Any] = {"id": self.id}
        if self.name and self.name != self.id:
            dag["name"] = self.name
        if self.description:
            dag["description"] = self.description
        if self.schedule is not None:
            dag["schedule"] = self.schedule
        dag["timezone"] = self.timezone
        dag["catchup"] = self.catchup
        dag["max_active_runs"] = self.max_active_runs
        if self.default_timeout_ms is not None:
            dag["default_timeout"] = f"{self.default_timeout_ms}ms"
        if self.run_timeout_ms is not None:
            dag["run_timeout"] = f"{self.run_timeout_ms}ms"
        if self.retention_ms is not None:
            dag["retention"] = f"{self.retention_ms}ms"
        if self.labels:
            dag["labels"] = list(self.labels)
        if self.params or self.param_rules:
            dag["params"] = {
                name: rule.to_dict()
                if (rule := self.param_rules.get(name))
                else plain_default_document(self.params[name])
                for name in dict.fromkeys([*self.params, *self.param_rules])
            }
        if self.allow_extra_args:
            dag["allow_extra_args"] = True
        if self.sla_ms is not None:
            dag["sla"] = f"{self.sla_ms}ms"
        if self.notify:
            dag["notify"] = self.notify.to_dict()
        if self.python is not None:
            dag["python"] = self.python
        return {"dag": dag, "tasks": [t.to_dict() for t in self.tasks]}
