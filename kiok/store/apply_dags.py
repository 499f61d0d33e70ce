"""The DAG half of ``apply()`` that keeps history: registered versions and backfills.

Every registration whose spec differs from the current one becomes a new version, stored
with its source, who registered it and the source's hash (``dagver/<dag>/<version>``); an
unchanged spec keeps its version. Only the newest ``keep_versions`` are kept. Numbers go on
after a DAG is deleted and registered again, so a run's ``dagVersion`` never names two specs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kiok.core.cron import watermark_on_register
from kiok.dag.load import compiled_spec
from kiok.errors import DagPaused, InvalidInput, MaintenanceMode, NotFound
from kiok.store import commands as c
from kiok.store import keys as k
from kiok.store.apply_lifecycle import maintenance_on
from kiok.store.apply_runs import create_run
from kiok.store.effects import Effects
from kiok.store.txn import Txn


def source_hash(spec: dict[str, Any], source: str | None) -> str:
    """SHA-256 of the source as registered (of the canonical spec when there is none)."""
    text = source if source is not None else json.dumps(spec, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _latest_version(txn: Txn, dag_id: str) -> int:
    for _, value in txn.scan(k.META, k.dag_versions_prefix(dag_id), reverse=True):
        return int(value["version"])
    return 0


def register_dag(txn: Txn, cmd: c.RegisterDag, fx: Effects) -> dict[str, Any]:
    dag_id = cmd.spec["dag"]["id"]
    old = txn.get(k.META, k.dag(dag_id))
    if old is not None and old["spec"] == cmd.spec and cmd.keep_versions:
        return {"registered": dag_id, "version": old["version"], "changed": False}
    version = max(old["version"] if old else 0, _latest_version(txn, dag_id)) + 1
    record = {
        "spec": cmd.spec,
        "source": cmd.source,
        "version": version,
        "paused": old["paused"] if old else False,
        "registeredMs": old["registeredMs"] if old else cmd.at_ms,
        "updatedMs": cmd.at_ms,
        # A new DAG, or a schedule added or changed, arms from now, even with catchup.
        "watermarkMs": watermark_on_register(
            old["spec"]["dag"] if old else None,
            old["watermarkMs"] if old else cmd.at_ms,
            cmd.spec["dag"],
            cmd.at_ms,
        ),
    }
    txn.put(k.META, k.dag(dag_id), record)
    if cmd.keep_versions:
        txn.put(
            k.META,
            k.dag_version(dag_id, version),
            {
                "version": version,
                "registeredMs": cmd.at_ms,
                "by": cmd.by,
                "sourceHash": source_hash(cmd.spec, cmd.source),
                "spec": cmd.spec,
                "source": cmd.source,
            },
        )
        for key, value in txn.scan(k.META, k.dag_versions_prefix(dag_id)):
            if int(value["version"]) > version - cmd.keep_versions:
                break
            txn.delete(k.META, key.decode())
    fx.dags_changed.append(dag_id)
    return {"registered": dag_id, "version": version, "changed": True}


def apply_backfill(txn: Txn, cmd: c.Command, fx: Effects) -> Any:
    """One PENDING run per interval without a run yet (``trigger: backfill``); the
    coordinator starts them as ``max_active_runs`` allows, oldest first."""
    assert isinstance(cmd, c.Backfill)
    record = txn.get(k.META, k.dag(cmd.dag_id))
    if record is None:
        raise NotFound(f"DAG {cmd.dag_id!r} not found")
    if not record["spec"]["dag"].get("schedule"):
        raise InvalidInput(f"DAG {cmd.dag_id!r} has no schedule: there are no intervals to backfill")
    if record["paused"]:
        raise DagPaused(f"DAG {cmd.dag_id!r} is paused; unpause it to backfill")
    if maintenance_on(txn):
        raise MaintenanceMode("maintenance mode is on: no new runs until it ends; retry later")
    compiled_spec(record["spec"])  # a stored spec always compiles; fail here, not per run
    created: list[str] = []
    existing: list[str] = []
    for start, end in cmd.intervals:
        key = k.scheduled(cmd.dag_id, start)
        have = txn.get(k.META, key)
        if have is not None:
            existing.append(have)
            continue
        run_id = create_run(
            txn,
            record["spec"],
            "backfill",
            {},
            start,
            cmd.at_ms,
            fx,
            dag_version=record["version"],
            interval=(start, end),
            by=cmd.by,
        )
        txn.put(k.META, key, run_id)
        created.append(run_id)
    return {"created": created, "existing": existing}
