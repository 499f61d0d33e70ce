"""The dashboard's aggregates, as a pure function of run summaries: counts by state, runs
started and tasks finished per time bucket, the running, waiting and recently failed runs.

The master hands in what it read (``RunSample``: a run header and its tasks' end times); this
module only counts, so the numbers the UI shows are testable without a cluster."""

from __future__ import annotations

from dataclasses import dataclass

from kiok.core.states import RunState

#: Runs shown per list (running, waiting, failed): a glance, not a report.
LIST_LIMIT = 10


@dataclass(frozen=True)
class RunSample:
    run_id: str
    dag_id: str
    state: str
    created_ms: int
    started_ms: int | None
    ended_ms: int | None
    #: Why the run waits (the coordinator's reason), for an unfinished run.
    waiting: str | None = None
    tasks_total: int = 0
    tasks_done: int = 0
    #: End times of the run's finished tasks (only loaded for runs that touch the window).
    task_ends_ms: tuple[int, ...] = ()


@dataclass(frozen=True)
class Bucket:
    start_ms: int
    runs: int
    tasks: int


@dataclass(frozen=True)
class Dashboard:
    window_ms: int
    bucket_ms: int
    counts: dict[str, int]
    series: list[Bucket]
    running: list[RunSample]
    waiting: list[RunSample]
    failed: list[RunSample]
    #: Runs looked at; ``truncated`` when older runs in the window were not read.
    scanned: int = 0
    truncated: bool = False


def summarize(
    samples: list[RunSample], now_ms: int, window_ms: int, buckets: int, *, truncated: bool = False
) -> Dashboard:
    """``counts``: every unfinished run plus the runs that ended within the window, by state.
    ``series``: ``buckets`` equal slices of the window (oldest first) with the runs created and
    the tasks that finished in each. Lists are newest first."""
    bucket_ms = max(1, window_ms // buckets)
    start = now_ms - bucket_ms * buckets
    counts = {s.value: 0 for s in RunState}
    runs = [0] * buckets
    tasks = [0] * buckets

    def slot(at_ms: int) -> int | None:
        if at_ms < start or at_ms > now_ms:
            return None
        return min(buckets - 1, (at_ms - start) // bucket_ms)

    for s in samples:
        if s.ended_ms is None or s.ended_ms >= start:
            counts[s.state] = counts.get(s.state, 0) + 1
        i = slot(s.created_ms)
        if i is not None:
            runs[i] += 1
        for end in s.task_ends_ms:
            j = slot(end)
            if j is not None:
                tasks[j] += 1
    newest = sorted(samples, key=lambda s: s.created_ms, reverse=True)
    running = [s for s in newest if s.state == RunState.RUNNING.value and not s.waiting]
    waiting = [
        s
        for s in newest
        if s.state == RunState.PENDING.value or (s.state == RunState.RUNNING.value and s.waiting)
    ]
    failed = sorted(
        (s for s in samples if s.state == RunState.FAILED.value and s.ended_ms is not None),
        key=lambda s: s.ended_ms or 0,
        reverse=True,
    )
    return Dashboard(
        window_ms=bucket_ms * buckets,
        bucket_ms=bucket_ms,
        counts=counts,
        series=[Bucket(start + i * bucket_ms, runs[i], tasks[i]) for i in range(buckets)],
        running=running[:LIST_LIMIT],
        waiting=waiting[:LIST_LIMIT],
        failed=failed[:LIST_LIMIT],
        scanned=len(samples),
        truncated=truncated,
    )
