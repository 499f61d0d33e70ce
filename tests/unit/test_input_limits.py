"""Limits on what comes from outside (issue 13 §6-7): parsed documents, JSON bodies, DAG
documents, durations, failed-login counting, the password-hash pool, trusted proxies, and
the warning for a port exposed without TLS."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest

from kiok.config import Settings
from kiok.core.document_limits import INT_MAX, INT_MIN, document_problem, parse_json_int
from kiok.dag.durations import MAX_DURATION_MS, parse_duration_ms
from kiok.dag.load import spec_from_json, spec_from_yaml
from kiok.errors import DagValidationError, InvalidInput
from kiok.master.api.json_limits import json_body_problem
from kiok.roots.common import local_proxy_exposure, plaintext_exposure, trusted_proxies
from kiok.security import passwords
from kiok.security.passwords import HashPool
from kiok.security.ratelimit import FailureLimiter


def _nested(n: int) -> str:
    return "[" * n + "]" * n


def test_document_problem_names_the_place() -> None:
    assert document_problem({"a": [1, 2.5, "s", True, None, {"b": INT_MAX, "c": INT_MIN}]}) is None
    assert document_problem({"a": [1, {"b": INT_MAX + 1}]}) == (
        "a[1].b: integer out of range (a 64-bit signed integer: at most 19 digits)"
    )
    assert document_problem([INT_MIN - 1]) is not None
    assert document_problem({"x": float("nan")}) == "x: NaN and infinity are not valid values"
    assert document_problem({"x": [float("-inf")]}) is not None
    assert document_problem(True) is None  # a bool is not an out-of-range int
    assert document_problem([1] * 10, max_values=5) is not None


def test_document_problem_walks_any_depth_without_recursion() -> None:
    deep: list[object] = []
    inner = deep
    for _ in range(100_000):
        inner.append([])
        inner = inner[0]  # type: ignore[assignment]
    problem = document_problem({"k": deep})
    assert problem is not None and problem.endswith("nested too deeply (at most 64 levels)")
    assert problem.startswith("k[0][0]") and len(problem) < 160


def test_parse_json_int_turns_any_long_integer_into_one_out_of_range() -> None:
    assert parse_json_int("-9223372036854775808") == INT_MIN
    assert parse_json_int("9" * 5000) == INT_MAX + 1  # no ValueError from Python's digit limit


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (_nested(10_000).encode(), "JSON body nested too deeply (at most 64 levels)"),
        (b'{"a": ' + _nested(100).encode() + b"}", "JSON body: a[0][0]"),
        (b'{"n": ' + b"9" * 5000 + b"}", "JSON body: n: integer out of range"),
        (b'{"n": 9223372036854775808}', "JSON body: n: integer out of range"),
        (b'{"f": [NaN]}', "JSON body: f[0]: NaN and infinity"),
        (b'{"f": 1e999}', "JSON body: f: NaN and infinity"),
        (b'{"g": ["ok", "\\ud800"]}', "JSON body: g[1]: not valid Unicode text"),
        (b'{"a": {"\\udfff\\u00e9": 1}}', "JSON body: a: a key is not valid Unicode text"),
    ],
)
def test_json_body_problem(body: bytes, problem: str) -> None:
    found = json_body_problem(body)
    assert found is not None and found.startswith(problem), found


@pytest.mark.parametrize(
    "body", [b"", b"  ", b'{"ok": [1, 2.5, "x"]}', b"dag: {id: x}", b"\xef\xbb\xbf{bad", b"{bad"]
)
def test_json_body_problem_leaves_other_bodies_to_the_endpoint(body: bytes) -> None:
    assert json_body_problem(body) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dag: {id: x, params: {p: " + _nested(10_000) + "}}", "invalid YAML: nested too deeply"),
        ("dag: {id: x, max_active_runs: " + "9" * 5000 + "}", "invalid YAML: integer out of range"),
        ("dag: {id: x, max_active_runs: " + "9" * 30 + "}", "dag.max_active_runs: integer out of range"),
        ("dag: {id: x, params: {d: 2023-02-30}}", "invalid YAML: day is out of range for month"),
    ],
)
def test_yaml_dag_limits(text: str, message: str) -> None:
    with pytest.raises(DagValidationError) as e:
        spec_from_yaml(text + "\ntasks: [{id: a, script: 'true'}]\n")
    assert e.value.message.startswith(message), e.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"dag": {"id": "x", "params": {"p": ' + _nested(10_000) + "}}}", "invalid JSON: nested too deeply"),
        ('{"dag": {"id": "x", "max_active_runs": ' + "9" * 5000 + "}}", "dag.max_active_runs: integer out"),
        ('{"dag": {"id": "x", "params": {"p": NaN}}}', "dag.params.p: NaN and infinity"),
    ],
)
def test_json_dag_limits(text: str, message: str) -> None:
    with pytest.raises(DagValidationError) as e:
        spec_from_json(text)
    assert e.value.message.startswith(message), e.value.message


@pytest.mark.parametrize("value", ["100000000000000000000000s", "366d", 10**20, MAX_DURATION_MS + 1, 1e300])
def test_durations_over_a_year_are_refused_naming_the_field(value: object) -> None:
    with pytest.raises(DagValidationError) as e:
        parse_duration_ms(value, "tasks[0].timeout")
    assert e.value.field == "tasks[0].timeout" and "maximum of 365 days" in e.value.message
    assert len(e.value.message) < 200


def test_a_year_is_the_longest_duration() -> None:
    assert parse_duration_ms("365d", "t") == MAX_DURATION_MS == parse_duration_ms(MAX_DURATION_MS, "t")
    with pytest.raises(DagValidationError, match="maximum of 365 days"):
        spec_from_yaml("dag: {id: x}\ntasks: [{id: a, script: 'true', timeout: 100000000000000000000000s}]")


def test_forgive_takes_back_one_counted_attempt() -> None:
    limiter = FailureLimiter(max_failures=2, window_ms=1000)
    limiter.failed("addr", 10)
    limiter.failed("addr", 20)
    assert limiter.retry_after_ms("addr", 30) == 980
    limiter.forgive("addr", 20)  # that attempt succeeded
    assert limiter.retry_after_ms("addr", 30) == 0
    limiter.forgive("addr", 99)  # nothing recorded then: no change
    limiter.forgive("other", 10)
    limiter.failed("addr", 40)
    assert limiter.retry_after_ms("addr", 50) == 960


def test_a_limiter_that_allows_no_failure_is_refused_and_aged_failures_are_dropped() -> None:
    """``FailureLimiter(0, ...)`` raised IndexError on the first attempt (an HTTP 500 on every
    login, when ``kiok.auth.login.max.failures`` was 0): it is refused where it is made."""
    with pytest.raises(ValueError, match="at least 1"):
        FailureLimiter(max_failures=0, window_ms=1000)
    limiter = FailureLimiter(max_failures=1, window_ms=1000)
    limiter.failed("addr", 10)
    assert limiter.retry_after_ms("addr", 500) == 510
    assert limiter.retry_after_ms("addr", 1010) == 0  # aged out: the key is forgotten
    assert limiter._failures == {}


async def test_hash_pool_runs_hashes_off_the_loop_at_most_concurrency_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running, most = 0, 0
    lock = threading.Lock()
    release = threading.Event()

    def slow_verify(password_hash: str, password: str) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(10)
        with lock:
            running -= 1
        return password_hash == password

    monkeypatch.setattr(passwords, "verify_password", slow_verify)
    pool = HashPool(2)
    try:
        checks = [asyncio.create_task(pool.verify("a", "a" if i == 0 else "b")) for i in range(6)]
        deadline = time.monotonic() + 10
        while most < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # the loop keeps turning while the hashes block their threads
        assert most == 2
        release.set()
        assert await asyncio.gather(*checks) == [True] + [False] * 5
        assert most == 2
    finally:
        pool.close()


def test_hash_pool_defaults_to_one_per_cpu() -> None:
    pool = HashPool(0)
    try:
        assert pool.concurrency == passwords.cpu_count() >= 1
    finally:
        pool.close()


def test_trusted_proxies_setting() -> None:
    assert trusted_proxies(Settings.load({})) == []
    given = Settings.load({"KIOK_ADMIN_HTTP_TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16,::1"})
    assert trusted_proxies(given) == ["10.0.0.1/32", "192.168.0.0/16", "::1/128"]
    with pytest.raises(InvalidInput, match=re.escape("kiok.admin.http.trusted.proxies: 'proxy.example'")):
        trusted_proxies(Settings.load({"KIOK_ADMIN_HTTP_TRUSTED_PROXIES": "proxy.example"}))


@pytest.mark.parametrize(
    ("host", "tls", "warns"),
    [
        ("127.0.0.1", False, False),
        ("127.0.0.2", False, False),
        ("::1", False, False),
        ("localhost", False, False),
        ("0.0.0.0", False, True),
        ("::", False, True),
        ("", False, True),
        ("10.1.2.3", False, True),
        ("master.example", False, True),
        ("0.0.0.0", True, False),
        ("master.example", True, False),
    ],
)
def test_plaintext_exposure_warns_for_a_non_loopback_address_without_tls(
    host: str, tls: bool, warns: bool
) -> None:
    warning = plaintext_exposure(host, tls)
    assert (warning is not None) == warns
    if warning:
        assert "without TLS" in warning and "kiok.tls.cert" in warning


@pytest.mark.parametrize(
    ("proxies", "runs_tasks", "warns"),
    [
        (["127.0.0.1/32"], True, True),
        (["10.0.0.0/8", "::1/128"], True, True),
        (["0.0.0.0/0"], True, True),
        (["10.0.0.5/32"], True, False),
        (["127.0.0.1/32"], False, False),
        ([], True, False),
    ],
)
def test_a_loopback_proxy_in_a_process_that_runs_tasks_is_warned_of(
    proxies: list[str], runs_tasks: bool, warns: bool
) -> None:
    """Tasks connect from 127.0.0.1 too: believed there, their X-Forwarded-For names anyone."""
    warning = local_proxy_exposure(proxies, runs_tasks)
    assert (warning is not None) == warns
    if warning:
        assert "X-Forwarded-For" in warning and "kiok.admin.http.trusted.proxies" in warning
