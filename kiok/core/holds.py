"""Why a PENDING run may not start now, whatever the workers: maintenance mode, or its DAG
paused. One decision, taken twice: by the leader's dispatch pass before it offers a run, and
by ``apply()`` on the assignment it commits (a pause can commit in the same Raft entry, just
ahead of it)."""

from __future__ import annotations

MAINTENANCE = "maintenance mode is on: it starts when maintenance ends"


def hold_reason(dag_id: str, *, maintenance: bool, paused: bool) -> str | None:
    """Why a pending run of ``dag_id`` is held, or None."""
    if maintenance:  # running runs go on (and are reassigned); pending ones wait
        return MAINTENANCE
    if paused:
        return f"DAG {dag_id} is paused"
    return None
