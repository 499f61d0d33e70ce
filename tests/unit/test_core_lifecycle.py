"""The pure lifecycle decisions: which cron firings maintenance skips, and what retention
does to a run."""

from __future__ import annotations

from typing import Any

from kiok.core.maintenance import split_fires
from kiok.core.retention import DAY_MS, Policy, Verdict, days_ms, judge, past_every_cutoff


def test_while_on_every_due_firing_is_skipped_after_only_those_inside_the_window() -> None:
    fires = (100, 200, 300, 400)
    assert split_fires(fires, {"enabled": True, "sinceMs": 250, "untilMs": None}) == ((), fires)
    assert split_fires(fires, {"enabled": False, "sinceMs": 150, "untilMs": 300}) == ((100, 400), (200, 300))
    never = {"enabled": False, "sinceMs": None, "untilMs": None}
    assert split_fires(fires, never) == (fires, ())


def test_policy_a_dags_retention_replaces_the_global_one_and_logs_go_no_later_than_runs() -> None:
    assert days_ms(0) is None and days_ms(-1) is None and days_ms(0.5) == DAY_MS // 2
    assert Policy.of(None, None, None).keeps_everything
    assert Policy.of(1000, 5000, None) == Policy(1000, None)
    assert Policy.of(None, 5000, 2000) == Policy(5000, 2000)
    assert Policy.of(1000, 5000, 2000) == Policy(1000, None)  # the run goes first anyway
    assert Policy.of(None, None, 2000) == Policy(None, 2000)


def run(state: str, created: int, ended: int | None, **extra: Any) -> dict[str, Any]:
    return {"state": state, "createdMs": created, "endedMs": ended, **extra}


def test_judge_never_touches_live_runs_and_acts_on_the_end_time() -> None:
    policy = Policy(runs_ms=1000, logs_ms=None)
    assert judge(run("RUNNING", 0, None), policy, 10_000) is Verdict.KEEP
    assert judge(run("PENDING", 0, None), policy, 10_000) is Verdict.KEEP
    assert judge(run("FAILED", 0, 8_999), policy, 10_000) is Verdict.DELETE
    assert judge(run("SUCCESS", 0, 9_000), policy, 10_000) is Verdict.KEEP
    logs = Policy(runs_ms=None, logs_ms=1000)
    assert judge(run("SUCCESS", 0, 100), logs, 10_000) is Verdict.PURGE_LOGS
    assert judge(run("SUCCESS", 0, 100, logsPurgedMs=5), logs, 10_000) is Verdict.KEEP
    assert past_every_cutoff(run("RUNNING", 9_500, None), Policy(1000, 5000), 10_000)
    assert not past_every_cutoff(run("RUNNING", 8_000, None), Policy(1000, 5000), 10_000)
