"""Hostile DAG documents, params and backfill ranges against a real ``kiok standalone``: each
is refused (or, for the documented backfill range, accepted) with a clear 4xx, promptly and
with a short body, and the master keeps answering."""

from __future__ import annotations

import httpx
import pytest

from kiok.testing.process import Standalone

pytestmark = pytest.mark.slow


def _post_yaml(kiok: Standalone, text: str | bytes) -> httpx.Response:
    return kiok.api(
        "POST", "/api/v1/dags", content=text, headers={"Content-Type": "application/yaml"}, timeout=60
    )


def _cycle(n: int) -> str:
    tasks = "\n".join(f"  - {{id: t{i}, requires: [t{(i - 1) % n}], script: x}}" for i in range(n))
    return f"dag: {{id: cyc}}\ntasks:\n{tasks}\n"


@pytest.mark.timeout(60)
def test_oversized_and_overfull_documents_are_refused_early(shared_kiok: Standalone) -> None:
    kiok = shared_kiok
    eight_mb = b"x: [" + b",".join([b"1"] * 4_000_000) + b"]\n"
    r = _post_yaml(kiok, eight_mb)
    assert r.status_code == 413 and "DAG document too large: 8000005 bytes, at most 4194304" in r.text, r.text
    # Under the size limit but over the value limit; a syntax error after the limit is never reached.
    overfull = b"x: [" + b",".join([b"1"] * 1_900_000) + b"]\n]]]"
    r = _post_yaml(kiok, overfull)
    assert r.status_code == 400 and "document too large: over 200000 values" in r.text, r.text
    assert kiok.api("GET", "/healthz", auth=False).status_code == 200


@pytest.mark.timeout(60)
def test_a_30000_task_cycle_gets_a_short_answer_with_its_line(shared_kiok: Standalone) -> None:
    r = _post_yaml(shared_kiok, _cycle(30_000))
    assert r.status_code == 400, r.text
    assert len(r.content) < 4_000, len(r.content)
    body = r.json()
    message = body["error"]["message"]
    assert "cycle: t0 -> t1" in message and "(29980 more tasks) -> t0" in message
    assert body["errors"][0]["path"] == "tasks" and body["errors"][0]["line"] == 2


@pytest.mark.timeout(30)
def test_a_catastrophic_param_pattern_does_not_stall_the_master(shared_kiok: Standalone) -> None:
    kiok = shared_kiok
    dag = kiok.register(
        "dag: {id: redos, params: {s: {type: string, pattern: '(a+)+b', default: ab}}}\n"
        "tasks: [{id: a, script: 'true'}]\n"
    )
    r = kiok.api("POST", f"/api/v1/dags/{dag}/runs", json={"args": {"s": "a" * 60}})
    assert r.status_code == 400 and "args.s:" in r.text and "does not match pattern" in r.text, r.text
    r = _post_yaml(
        kiok,
        "dag: {id: look, params: {s: {type: string, pattern: '(?<!x)b', default: b}}}\n"
        "tasks: [{id: a, script: x}]\n",
    )
    assert r.status_code == 400 and "dag.params.s.pattern: invalid regular expression" in r.text, r.text
    assert "lookbehind" in r.text and r.json()["errors"][0]["line"] == 1


def test_merge_keys_and_unicode_digits_are_refused(shared_kiok: Standalone) -> None:
    r = _post_yaml(
        shared_kiok,
        "dag: {id: m}\ntasks:\n  - id: a\n    script: x\n    <<: {retries: 3}\n    <<: {retries: 2}\n",
    )
    assert (
        r.status_code == 400 and "found duplicate key '<<'" in r.text and r.json()["errors"][0]["line"] == 6
    )
    r = _post_yaml(shared_kiok, "dag: {id: u}\ntasks:\n  - {id: a, script: x, timeout: '١٢s'}\n")
    assert r.status_code == 400 and "tasks[0].timeout: invalid duration" in r.text, r.text
    assert r.json()["errors"][0]["line"] == 3


@pytest.mark.parametrize(
    ("tz", "days"),
    [("Europe/Berlin", ("1970-01-01", "1970-01-02")), ("America/New_York", ("8999-12-30", "8999-12-31"))],
)
def test_the_documented_backfill_range_is_accepted_in_any_time_zone(
    shared_kiok: Standalone, tz: str, days: tuple[str, str]
) -> None:
    kiok = shared_kiok
    dag = kiok.register(
        f'dag: {{id: bf_{tz.split("/")[1].lower()}, schedule: "0 0 1 1 *", timezone: {tz}}}\n'
        "tasks: [{id: a, script: 'true'}]\n"
    )
    r = kiok.api("POST", f"/api/v1/dags/{dag}/backfill", json={"from": days[0], "to": days[1]})
    assert r.status_code == 201, r.text
    r = kiok.api("POST", f"/api/v1/dags/{dag}/backfill", json={"from": "1969-12-31", "to": days[1]})
    assert r.status_code == 400 and "from: '1969-12-31' is out of range" in r.text, r.text


def test_two_whole_number_args_on_one_variable_are_refused(shared_kiok: Standalone) -> None:
    """The re-probe of session 29: integers skipped the trigger's checks (no thread hop for
    them), so ``ab=1, AB=2`` were both taken on ``KIOK_PARAM_AB``: a shell task's
    ``${params.ab}`` read 2, a python task's 1."""
    kiok = shared_kiok
    kiok.register("dag: {id: coll, allow_extra_args: true}\ntasks:\n  - {id: t, script: 'true'}\n")
    for args in ({"ab": 1, "AB": 2}, {"ab": "1", "AB": "2"}):
        r = kiok.api("POST", "/api/v1/dags/coll/runs", json={"args": args})
        assert r.status_code == 400, r.text
        assert "args.AB: would be the same variable (KIOK_PARAM_AB) as args.ab" in r.text
    assert kiok.api("POST", "/api/v1/dags/coll/runs", json={"args": {"ab": 1, "cd": 2}}).status_code == 201


def test_a_default_grown_past_the_bounds_by_its_date_functions_fails_in_words(
    shared_kiok: Standalone,
) -> None:
    """The re-probe of session 29: the attempt failed with "Argument list too long"."""
    kiok = shared_kiok
    grows = "#{nowFormatted('" + "Za" * 32_700 + "')}"
    kiok.register(f'dag: {{id: grows, params: {{p: "{grows}"}}}}\ntasks:\n  - {{id: t, script: "true"}}\n')
    run = kiok.wait_run(kiok.trigger("grows"), 60)
    assert run["state"] == "FAILED"
    error = run["tasks"]["t"]["error"]
    assert error.startswith("param 'p': its default is 228900 bytes once its date functions"), error
