"""The run indexes and run summaries that keep a long history cheap to list.

Every run is listed through an index whose keys end in its sequence number, so a page is
one short reverse scan whatever the size of the history: ``runs/<seq>`` (all runs),
``dagruns/<dag>/<seq>`` (one DAG), ``staterun/<state>/<seq>`` (one state) and
``dagstaterun/<dag>/<state>/<seq>`` (one DAG, one state). The first two are written when a
run is created; the state indexes move with the run's state, which only ``apply()``
changes, so they are kept here, in the same transaction as the header.

The header records the state its index entries are under (``indexedState``): keeping the
index needs no earlier copy of the header (in a batch, the header a command reads from the
transaction is the very object the previous command changed). It also carries its task
counts by state (``taskCounts``), kept as each task record changes, so a list shows how far
a run got without reading its task records.

A store written before these existed is brought up to date once, by a scan when it is
opened (``build``); the store remembers the index version it holds (``RUN_INDEX_VERSION``).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from kiok.core.states import TaskState
from kiok.store import keys as k
from kiok.store.kv import KVStore, Write
from kiok.store.txn import Txn, decode, encode

log = logging.getLogger(__name__)

#: The index layout this code keeps; a store below it is rebuilt by ``build``.
VERSION = 1
#: Runs rewritten per store write while building.
_BUILD_BATCH = 2000


def initial_counts(tasks: int) -> dict[str, int]:
    """A new run's task counts: every task unstarted (PENDING)."""
    return {TaskState.PENDING.value: tasks} if tasks else {}


def count_task(run: dict[str, Any], old: str, new: str) -> None:
    """One task of ``run`` went from state ``old`` to ``new``. A header without counts
    (stored before they existed, not yet rebuilt) is left alone: ``build`` counts it."""
    counts = run.get("taskCounts")
    if counts is None or old == new:
        return
    counts[old] = counts.get(old, 0) - 1
    if counts[old] <= 0:
        del counts[old]
    counts[new] = counts.get(new, 0) + 1


def index_entries(run: dict[str, Any], state: str) -> tuple[str, str]:
    """The state index keys of ``run`` under ``state``."""
    return (
        k.run_by_state(state, run["seq"]),
        k.run_by_dag_state(run["dagId"], state, run["seq"]),
    )


def put_header(txn: Txn, run: dict[str, Any]) -> None:
    """Write a run header, moving its state index entries when its state changed."""
    state, indexed = run["state"], run.get("indexedState")
    if indexed != state:
        if indexed is not None:
            for key in index_entries(run, indexed):
                txn.delete(k.META, key)
        for key in index_entries(run, state):
            txn.put(k.META, key, run["runId"])
        run["indexedState"] = state
    txn.put(k.META, k.run(run["runId"]), run)


def unindex(txn: Txn, run: dict[str, Any]) -> None:
    """Remove every index entry of a run being deleted."""
    txn.delete(k.META, k.run_by_seq(run["seq"]))
    txn.delete(k.META, k.run_by_dag(run["dagId"], run["seq"]))
    for state in {run["state"], run.get("indexedState")} - {None}:
        for key in index_entries(run, state):
            txn.delete(k.META, key)


def counts_of(stored: list[str], ids: list[str] | None) -> dict[str, int]:
    """Task counts from a run's stored task-record states and its task ids (a task without
    a record is PENDING; a run stored before the id list has a record for every task)."""
    counts = Counter(stored)
    if ids is not None:
        counts[TaskState.PENDING.value] += max(0, len(ids) - len(stored))
    return {state: n for state, n in counts.items() if n > 0}


def built_version(kv: KVStore) -> int:
    raw = kv.get(k.KMS, k.RUN_INDEX_VERSION.encode())
    return 0 if raw is None else int(decode(raw))


def build(kv: KVStore) -> int:
    """Bring a store's run indexes and summaries to ``VERSION`` (idempotent: a store
    already there is left alone; a build cut short is done again from the start). Returns
    the number of runs rewritten. Runs before the store serves: readers and ``apply()`` see
    the indexes whole."""
    if built_version(kv) >= VERSION:
        return 0
    rewritten = 0
    writes: list[Write] = []
    for _, raw in kv.scan(k.META, b"run/"):
        run = decode(raw)
        if "taskCounts" not in run:
            prefix = k.tasks_prefix(run["runId"]).encode()
            stored = [decode(v)["state"] for _, v in kv.scan(k.META, prefix)]
            ids_raw = kv.get(k.META, k.run_task_ids(run["runId"]).encode())
            run["taskCounts"] = counts_of(stored, None if ids_raw is None else decode(ids_raw))
        run["indexedState"] = run["state"]
        value = encode(run["runId"])
        writes += [(k.META, key.encode(), value) for key in index_entries(run, run["state"])]
        writes.append((k.META, k.run(run["runId"]).encode(), encode(run)))
        rewritten += 1
        if rewritten % _BUILD_BATCH == 0:
            kv.write(writes, sync=False)
            writes = []
            log.info("run indexes: %d runs indexed so far", rewritten)
    writes.append((k.KMS, k.RUN_INDEX_VERSION.encode(), encode(VERSION)))
    kv.write(writes, sync=True)
    if rewritten:
        log.info("run indexes: built for %d runs (index version %d)", rewritten, VERSION)
    return rewritten
