"""Every DAG's view as the DAG list shows it (``GET /api/v1/dags``), kept between requests.

Reading a DAG's record decrypts and decodes its whole spec and source: 1.5 MB and some
20 ms for a 10,000-task DAG, paid by every list while only the dozen fields of
``kiok.master.views.dag_view`` are shown. Those fields change only with the commands whose
effects name the DAG (``dags_changed``: registered, paused or unpaused, deleted) or with a
restore, so the views are read once and again only after such a batch (the scheduler's
watermark moves do not show). Effects arrive after the write they describe, on the thread
that reads, so a kept view is never older than the last change announced.
"""

from __future__ import annotations

from typing import Any

from kiok.master.views import dag_view
from kiok.store.effects import Effects
from kiok.store.reader import StateReader


class DagViews:
    def __init__(self, reader: StateReader) -> None:
        self._reader = reader
        self._views: list[dict[str, Any]] | None = None

    def all(self) -> list[dict[str, Any]]:
        """``dag_view`` of every DAG, in id order. Shared: copy one before changing it."""
        if self._views is None:
            self._views = [dag_view(record) for record in self._reader.dags()]
        return self._views

    def on_effects(self, fx: Effects) -> None:
        if fx.dags_changed or fx.restored is not None:
            self._views = None

    def clear(self) -> None:
        self._views = None
