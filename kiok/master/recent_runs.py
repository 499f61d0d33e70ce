"""The newest runs of each DAG as the DAG list shows them (``GET /api/v1/dags?lastRuns=N``),
kept between requests.

Building them reads, per DAG, N index keys and N run headers (decrypted, decoded, their
times formatted): with 100 DAGs and N = 12, 1,200 header reads, some 60 ms of CPU, for a
page the UI polls. Between two changes to a DAG's runs the answer is the same, so each DAG's
list is kept until the command log's effects name one of its runs (created, changed,
finished, reopened, deleted): a poll then reads only the DAGs whose runs moved. Effects are
delivered after the store write they describe and on the thread that reads, so an entry is
never older than the last change announced. Followers get the same effects as they apply.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from kiok.master.views import iso
from kiok.store.effects import Effects
from kiok.store.reader import StateReader

#: DAGs whose lists are kept (least recently read dropped first).
MAX_DAGS = 10_000


def dag_of(run_id: str) -> str:
    """The DAG id in a run id ``<dag>-<createdMs>-<seq>`` (a DAG id may hold ``-``)."""
    return run_id.rsplit("-", 2)[0]


def summary(header: dict[str, Any]) -> dict[str, Any]:
    """What the DAG list shows of one run: no tasks, no params."""
    return {
        "runId": header["runId"],
        "state": header["state"],
        "trigger": header["trigger"],
        "createdAt": iso(header["createdMs"]),
        "startedAt": iso(header["startedMs"]),
        "endedAt": iso(header["endedMs"]),
    }


class RecentRuns:
    def __init__(self, reader: StateReader) -> None:
        self._reader = reader
        #: dag id -> (its newest runs' summaries, newest first; whether that is all of them)
        self._lists: OrderedDict[str, tuple[list[dict[str, Any]], bool]] = OrderedDict()

    def newest(self, dag_id: str, limit: int) -> list[dict[str, Any]]:
        """The summaries of ``dag_id``'s newest ``limit`` runs, newest first. Shared: the
        caller must not change them."""
        kept = self._lists.get(dag_id)
        if kept is not None and (len(kept[0]) >= limit or kept[1]):
            self._lists.move_to_end(dag_id)
            return kept[0][:limit]
        runs = [summary(h) for h in self._reader.dag_run_headers_newest(dag_id, limit)]
        self._lists[dag_id] = (runs, len(runs) < limit)
        if len(self._lists) > MAX_DAGS:
            self._lists.popitem(last=False)
        return runs

    def on_effects(self, fx: Effects) -> None:
        """Forget the lists of the DAGs whose runs this batch touched."""
        if not self._lists:
            return
        if fx.restored is not None:
            self.clear()
            return
        for group in (fx.runs_created, fx.runs_changed, fx.runs_finished, fx.runs_reopened, fx.runs_deleted):
            for run_id in group:
                self._lists.pop(dag_of(run_id), None)
        for dag_id in fx.dags_changed:
            self._lists.pop(dag_id, None)

    def clear(self) -> None:
        self._lists.clear()

    def __len__(self) -> int:
        return len(self._lists)
