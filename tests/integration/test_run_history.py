"""Listing runs through the run indexes on a real standalone: summaries (task counts, no
task records), filters by DAG, state and creation time with cursors, bad filters refused by
name; a store written before the indexes lists correctly after the upgrade; a 10,000-task
DAG registers whole (its speed is measured in bench/history.py, not here)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kiok.store import keys
from kiok.store.encrypted import EncryptedKV
from kiok.store.keyring import existing_keyring
from kiok.store.kv import RocksKV
from kiok.store.txn import decode, encode
from kiok.testing.process import Standalone

KEY = "run-history-test-master-key-0123456789"
ENV = {"KIOK_MASTER_KEY": KEY, "KIOK_WORKER_TASK_SLOTS": "4"}


def dag(dag_id: str, fail: bool = False) -> str:
    return (
        f"dag: {{id: {dag_id}, max_active_runs: 10}}\n"
        "tasks:\n"
        "  - {id: a, script: 'true'}\n"
        f"  - {{id: b, requires: [a], script: '{'false' if fail else 'true'}'}}\n"
        "  - {id: c, script: 'true'}\n"
    )


def listed(node: Standalone, **params: Any) -> list[dict[str, Any]]:
    """Every run the list gives with these filters, following cursors two at a time."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
        r = node.api("GET", "/api/v1/runs", params=query)
        assert r.status_code == 200, r.text
        out += r.json()["runs"]
        cursor = r.json()["nextCursor"]
        if cursor is None:
            return out


def ids(runs: list[dict[str, Any]]) -> list[str]:
    return [r["runId"] for r in runs]


def history(node: Standalone) -> dict[str, list[str]]:
    """Runs of 'good' and 'bad', newest first; the first one of each is waited for alone so
    that creation times differ."""
    node.register(dag("good"))
    node.register(dag("bad", fail=True))
    made: dict[str, list[str]] = {"good": [], "bad": []}
    for i in range(3):
        for dag_id in ("good", "bad"):
            run_id = node.trigger(dag_id)
            made[dag_id].insert(0, run_id)
            if i == 0:
                node.wait_run(run_id, 30)
    for dag_id, runs in made.items():
        for run_id in runs:
            assert node.wait_run(run_id, 60)["state"] == ("SUCCESS" if dag_id == "good" else "FAILED")
    return made


def check_lists(node: Standalone, made: dict[str, list[str]]) -> None:
    everything = listed(node)
    assert sorted(ids(everything)) == sorted(made["good"] + made["bad"])
    assert ids(listed(node, dag="good")) == made["good"]
    assert ids(listed(node, state="failed")) == made["bad"]
    assert ids(listed(node, dag="bad", state="SUCCESS")) == []
    assert ids(listed(node, dag="good", state="SUCCESS")) == made["good"]
    for run in everything:
        failed = run["dagId"] == "bad"
        assert "tasks" not in run
        assert run["tasksTotal"] == 3
        assert run["taskCounts"] == ({"SUCCESS": 2, "FAILED": 1} if failed else {"SUCCESS": 3})
    # since/until select by creation time, [since, until).
    created = {r["runId"]: r["createdAt"] for r in everything}
    oldest_good = made["good"][-1]
    cut = created[oldest_good]
    after_cut = [r for r in ids(everything) if created[r] >= cut]
    assert ids(listed(node, since=cut)) == after_cut
    assert ids(listed(node, until=cut)) == [r for r in ids(everything) if created[r] < cut]
    millis = int(datetime.fromisoformat(cut.replace("Z", "+00:00")).timestamp() * 1000)
    assert ids(listed(node, dag="good", since=str(millis))) == made["good"]
    assert ids(listed(node, dag="good", until=str(millis))) == []


def test_lists_filter_page_and_summarise_runs(standalone_factory: Any) -> None:
    node: Standalone = standalone_factory(env=ENV)
    made = history(node)
    check_lists(node, made)
    for params, field in (
        ({"since": "yesterday"}, "since"),
        ({"until": "2024-13-01"}, "until"),
        ({"cursor": "-3"}, "cursor"),
        ({"state": "DONE"}, "state"),
    ):
        r = node.api("GET", "/api/v1/runs", params=params)
        assert r.status_code == 400 and field in r.json()["error"]["message"], (params, r.text)
    # One run read whole still has its task records.
    assert set(node.run(made["bad"][0])["tasks"]) == {"a", "b", "c"}


def strip_run_indexes(data_dir: Any) -> None:
    """Make a stopped master's store look like one written before the run indexes."""
    found = existing_keyring(data_dir / "state", KEY, 200_000)
    assert found is not None
    kv = EncryptedKV(RocksKV(data_dir / "state", keys.SPACES), keys.ENCRYPTION_KEYS)
    kv.set_keyring(found[0])
    try:
        writes: list[tuple[str, bytes, bytes | None]] = []
        for prefix in (b"staterun/", b"dagstaterun/"):
            writes += [(keys.META, key, None) for key, _ in kv.scan(keys.META, prefix)]
        assert writes, "the store had no state index to strip"
        for key, raw in kv.scan(keys.META, b"run/"):
            header = decode(raw)
            del header["taskCounts"], header["indexedState"]
            writes.append((keys.META, key, encode(header)))
        writes.append((keys.KMS, keys.RUN_INDEX_VERSION.encode(), None))
        kv.write(writes, sync=True)
    finally:
        kv.close()


def test_a_store_from_before_the_indexes_lists_correctly_after_the_upgrade(standalone_factory: Any) -> None:
    node: Standalone = standalone_factory(env=ENV)
    made = history(node)
    node.stop()
    strip_run_indexes(node.data_dir)
    node.start()
    check_lists(node, made)
    # New runs on the upgraded store are indexed as they go.
    new = node.trigger("bad")
    assert node.wait_run(new, 60)["state"] == "FAILED"
    assert ids(listed(node, state="FAILED"))[0] == new


def test_a_ten_thousand_task_dag_registers_whole(standalone_factory: Any) -> None:
    node: Standalone = standalone_factory(env=ENV)
    lines = ["dag: {id: huge}", "tasks:"]
    for i in range(10_000):
        req = f", requires: [t{i - 100}]" if i >= 100 else ""
        lines.append(f"  - {{id: t{i}{req}, script: 'true'}}")
    r = node.api(
        "POST", "/api/v1/dags", content="\n".join(lines) + "\n", headers={"Content-Type": "application/yaml"}
    )
    assert r.status_code == 201, r.text
    got = node.api("GET", "/api/v1/dags/huge").json()
    assert got["tasks"] == 10_000
