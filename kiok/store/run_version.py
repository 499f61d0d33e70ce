"""A run's version: what lets a reader ask "what changed since I last looked?".

``apply()`` numbers every change of a run: the header's ``version`` goes up whenever the
header or any of its task records is written, and a task record carries the version it
was written at (``v``). A reader that saw version ``n`` then needs only the records with
``v > n`` (and the tasks whose presentation follows from them, ``kiok.core.run_delta``).

Some changes alter how every task is shown at once: the run gaining or losing its driver
(a driven run shows its ready tasks QUEUED) and the run changing state. The header records
the version of the last such change (``viewBase``); a reader older than it must read the
whole run again. Being written by ``apply()`` only, all of this is the same on every
master, so a version read from one master means the same on another.

A run or record stored before versions existed reads as version 0.
"""

from __future__ import annotations

from typing import Any

from kiok.core.states import TaskRecord
from kiok.store.effects import Effects


def next_version(run: dict[str, Any]) -> int:
    """Bump ``run``'s (header dict) version and return the new one."""
    version = int(run.get("version", 0)) + 1
    run["version"] = version
    return version


def stored_record(run: dict[str, Any], record: TaskRecord) -> dict[str, Any]:
    """A task record as stored: its dict stamped with a new version of ``run``."""
    return {**record.to_dict(), "v": next_version(run)}


def stamp_header(run: dict[str, Any]) -> None:
    """Before a header is written: bump its version, and move ``viewBase`` up to it when
    the run's state or whether it has a driver changed since the last write."""
    version = next_version(run)
    shape = [run["state"], run["worker"] is not None]
    if run.get("viewShape") != shape:
        run["viewShape"] = shape
        run["viewBase"] = version


def stamp_noted(run: dict[str, Any], fx: Effects) -> None:
    """``stamp_header``, the versions it used noted in ``fx``."""
    before = int(run.get("version", 0))
    stamp_header(run)
    fx.version_used(run["runId"], before, run["version"])
