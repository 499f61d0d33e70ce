"""The DAG list's kept run lists: read once, read again only for a DAG whose runs changed;
and the policy check sifted once per list gives what ``is_allowed`` gives."""

from __future__ import annotations

from typing import Any

import pytest

from kiok.master.recent_runs import RecentRuns, dag_of
from kiok.security.policy import is_allowed, resource_check
from kiok.store.effects import Effects
from kiok.store.reader import StateReader


class CountingReader:
    """The one reader method the lists use, over headers held in memory, counting reads."""

    def __init__(self) -> None:
        self.headers: dict[str, list[dict[str, Any]]] = {}
        self.reads: list[str] = []

    def add(self, dag_id: str, n: int, state: str = "SUCCESS") -> str:
        runs = self.headers.setdefault(dag_id, [])
        seq = len(runs) + 1
        run_id = f"{dag_id}-{1_700_000_000_000 + seq}-{seq}"
        header = {"runId": run_id, "state": state, "trigger": "manual"}
        runs.append(header | {"createdMs": 1_700_000_000_000 + seq, "startedMs": None, "endedMs": None})
        return run_id

    def dag_run_headers_newest(self, dag_id: str, limit: int) -> list[dict[str, Any]]:
        self.reads.append(dag_id)
        return list(reversed(self.headers.get(dag_id, [])))[:limit]


def recent_over(reader: CountingReader) -> RecentRuns:
    return RecentRuns(reader)  # type: ignore[arg-type]  # the one method it calls


def test_a_dag_list_is_read_once_until_its_runs_change() -> None:
    reader = CountingReader()
    for _ in range(5):
        reader.add("a-b", 1)  # a DAG id with dashes: runs still map back to it
        reader.add("other", 1)
    recent = recent_over(reader)
    first = recent.newest("a-b", 3)
    assert [r["runId"] for r in first] == [f"a-b-{1_700_000_000_000 + s}-{s}" for s in (5, 4, 3)]
    assert first[0]["createdAt"] == "2023-11-14T22:13:20.005Z" and first[0]["endedAt"] is None
    recent.newest("other", 3)
    assert recent.newest("a-b", 2) == first[:2] and recent.newest("a-b", 3) == first
    assert reader.reads == ["a-b", "other"]
    assert recent.newest("a-b", 4)[3]["runId"].endswith("-2")  # more than kept: read again
    assert reader.reads == ["a-b", "other", "a-b"]

    new = reader.add("a-b", 1, state="PENDING")
    assert dag_of(new) == "a-b"
    recent.on_effects(Effects(runs_created=[new], runs_changed={new}))
    assert recent.newest("a-b", 3)[0] | {"createdAt": None} == {
        "runId": new,
        "state": "PENDING",
        "trigger": "manual",
        "createdAt": None,
        "startedAt": None,
        "endedAt": None,
    }
    recent.newest("other", 3)
    assert reader.reads == ["a-b", "other", "a-b", "a-b"]  # "other" was kept


@pytest.mark.parametrize(
    "fx",
    [
        Effects(runs_finished=["d-1-1"]),
        Effects(runs_reopened=["d-1-1"]),
        Effects(runs_deleted=["d-1-1"]),
        Effects(runs_changed={"d-1-1"}),
        Effects(dags_changed=["d"]),
        Effects(restored="backup-1"),
    ],
)
def test_every_change_to_a_dags_runs_forgets_its_list(fx: Effects) -> None:
    reader = CountingReader()
    reader.add("d", 1)
    recent = recent_over(reader)
    recent.newest("d", 12)
    recent.newest("d", 12)
    recent.on_effects(fx)
    recent.newest("d", 12)
    assert reader.reads == ["d", "d"]


def test_a_dag_with_fewer_runs_than_asked_is_kept_whole() -> None:
    reader = CountingReader()
    reader.add("d", 1)
    recent = recent_over(reader)
    assert len(recent.newest("d", 12)) == 1
    assert len(recent.newest("d", 50)) == 1
    assert reader.reads == ["d"]


POLICIES = [
    [],
    [{"Statement": [{"Effect": "Allow", "Action": ["*"], "Resource": ["*"]}]}],
    [{"Statement": [{"Effect": "Allow", "Action": ["runs:List"], "Resource": ["dag/d/run/*"]}]}],
    [{"Statement": [{"Effect": "Allow", "Action": ["runs:*"], "Resource": ["**"]}]}],
    [
        {"Statement": [{"Effect": "Allow", "Action": ["*"], "Resource": ["*"]}]},
        {"Statement": [{"Effect": "Deny", "Action": ["runs:List"], "Resource": ["dag/d/run/d-1*"]}]},
    ],
    [{"Statement": [{"Effect": "Allow", "Action": ["dags:List"], "Resource": ["*"]}]}],
    [{"Statement": [{"Effect": "Deny", "Action": ["*"], "Resource": ["*"]}]}],
]


@pytest.mark.parametrize("documents", POLICIES)
def test_resource_check_agrees_with_is_allowed(documents: list[dict[str, Any]]) -> None:
    check = resource_check(documents, "runs:List")
    for resource in ["dag/d/run/d-1-1", "dag/d/run/d-2-2", "dag/e/run/e-1-1", "dag/d"]:
        assert check(resource) == is_allowed(documents, "runs:List", resource), resource


def test_the_reader_has_what_the_lists_call() -> None:
    assert callable(StateReader.dag_run_headers_newest)
