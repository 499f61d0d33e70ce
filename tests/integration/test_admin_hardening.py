"""The master cannot be stalled or crashed from outside (issue 13 §6), against real processes:
a burst of wrong logins leaves other requests fast, failed logins are limited per address
too, ``X-Forwarded-For`` counts only from trusted proxies, bad input is a 400 naming the
problem (never a 500 or a wedged command log), durations are capped, every answer carries
the security headers, and the worker's drain refuses cross-site requests and can be undone."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kiok.security.http_headers import CONTENT_SECURITY_POLICY
from kiok.testing.process import Master, Standalone, WorkerProcess

DEEP = 10_000
#: The issue's bound on the delay a burst of 60 wrong logins may add to other requests, held
#: by the median probe. Measured on 2 cores shared with other test sessions: median 3-10 ms,
#: max 50-100 ms (the burst's 60 connections arriving at once); before hashing left the event
#: loop the first probe took 6 s and the burst was over before a second one. The max gets a
#: generous bound, still far below those 6 s, so a loaded machine does not fail the test.
MEDIAN_DELAY_S = 0.100
MAX_DELAY_S = 0.500


def _login(k: Standalone, user: str, password: str = "wrong", **kw: Any) -> httpx.Response:
    return httpx.post(k.url + "/api/v1/auth/login", json={"user": user, "password": password}, **kw)


async def test_a_burst_of_wrong_logins_does_not_stall_other_requests(standalone_factory: Any) -> None:
    k: Standalone = standalone_factory(env={"KIOK_AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS": "1000"})
    auth = {"Authorization": f"Bearer {k.token}"}
    async with (
        httpx.AsyncClient(base_url=k.url, timeout=60, limits=httpx.Limits(max_connections=100)) as attacker,
        httpx.AsyncClient(base_url=k.url, timeout=60) as probe,
    ):
        assert (await probe.get("/healthz")).status_code == 200  # the probe's connection is open
        burst = [
            asyncio.create_task(
                attacker.post("/api/v1/auth/login", json={"user": f"nobody-{i}", "password": "wrong"})
            )
            for i in range(60)
        ]
        delays: list[float] = []
        while not all(t.done() for t in burst):
            for path, headers in (("/healthz", {}), ("/api/v1/dags", auth)):
                started = time.perf_counter()
                r = await probe.get(path, headers=headers)
                delays.append(time.perf_counter() - started)
                assert r.status_code == 200, r.text
            await asyncio.sleep(0.05)  # pacing the probes, not waiting for anything
        answers = await asyncio.gather(*burst)
    assert [r.status_code for r in answers] == [401] * 60
    assert len(delays) >= 10, f"only {len(delays)} probes while the burst ran: {delays}"
    summary = f"median {statistics.median(delays):.3f}s, max {max(delays):.3f}s of {len(delays)} probes"
    assert statistics.median(delays) <= MEDIAN_DELAY_S and max(delays) <= MAX_DELAY_S, summary


async def test_failed_logins_are_limited_per_address_even_when_concurrent(standalone_factory: Any) -> None:
    k: Standalone = standalone_factory(env={"KIOK_AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS": "10"})
    async with httpx.AsyncClient(base_url=k.url, timeout=60) as client:
        answers = await asyncio.gather(
            *(
                client.post("/api/v1/auth/login", json={"user": f"guess-{i}", "password": "wrong"})
                for i in range(30)
            )
        )
    codes = sorted(r.status_code for r in answers)
    assert codes == [401] * 10 + [429] * 20
    assert all(int(r.headers["Retry-After"]) >= 1 for r in answers if r.status_code == 429)
    right = _login(k, "admin", k.env["KIOK_IAM_ADMIN_PASSWORD"])
    assert right.status_code == 429, "the address is limited whatever the user and password"
    assert right.json()["error"]["code"] == "rate_limited" and int(right.headers["Retry-After"]) >= 1


def test_x_forwarded_for_counts_only_from_trusted_proxies(standalone_factory: Any) -> None:
    direct: Standalone = standalone_factory("direct")
    spoofed = [_login(direct, "mallory", headers={"X-Forwarded-For": f"10.0.0.{i}"}) for i in range(6)]
    assert [r.status_code for r in spoofed] == [401] * 5 + [429], "a client cannot pick its address"

    proxied: Standalone = standalone_factory("proxied", env={"KIOK_ADMIN_HTTP_TRUSTED_PROXIES": "127.0.0.1"})
    clients = [_login(proxied, "mallory", headers={"X-Forwarded-For": f"10.0.0.{i}"}) for i in range(6)]
    assert [r.status_code for r in clients] == [401] * 6, "behind a trusted proxy each client counts"
    one = [_login(proxied, "mallory", headers={"X-Forwarded-For": "10.9.9.9"}) for _ in range(6)]
    assert [r.status_code for r in one] == [401] * 5 + [429]


def _nested(n: int) -> str:
    return "[" * n + "]" * n


_YAML = {"Content-Type": "application/yaml"}
_JSON = {"Content-Type": "application/json"}
BAD_INPUT = [
    pytest.param(
        "/api/v1/dags",
        '{"dag": {"id": "x", "params": {"p": ' + _nested(DEEP) + '}}, "tasks": []}',
        _JSON,
        "nested too deeply",
        id="dag-json-nested",
    ),
    pytest.param(
        "/api/v1/dags",
        "dag: {id: x, params: {p: " + _nested(DEEP) + "}}\ntasks: []\n",
        _YAML,
        "nested too deeply",
        id="dag-yaml-nested",
    ),
    pytest.param(
        "/api/v1/dags",
        '{"dag": {"id": "x", "max_active_runs": ' + "9" * 5000 + '}, "tasks": []}',
        _JSON,
        "integer out of range",
        id="dag-json-5000-digits",
    ),
    pytest.param(
        "/api/v1/dags",
        "dag: {id: x, max_active_runs: " + "9" * 5000 + "}\ntasks: []\n",
        _YAML,
        "integer out of range",
        id="dag-yaml-5000-digits",
    ),
    pytest.param(
        "/api/v1/dags",
        "dag: {id: x, max_active_runs: " + "9" * 50 + "}\ntasks: [{id: a, script: 'true'}]\n",
        _YAML,
        "dag.max_active_runs: integer out of range",
        id="dag-yaml-50-digits",
    ),
    pytest.param(
        "/api/v1/dags",
        "dag: {id: x, params: {day: 2023-02-30}}\ntasks: [{id: a, script: 'true'}]\n",
        _YAML,
        "day is out of range",
        id="dag-yaml-impossible-date",
    ),
    pytest.param(
        "/api/v1/auth/login", '{"user": ' + _nested(DEEP) + "}", _JSON, "nested too deeply", id="login-nested"
    ),
    pytest.param(
        "/api/v1/auth/login",
        '{"user": "a", "password": ' + "9" * 5000 + "}",
        {},
        "password: integer out of range",
        id="login-5000-digits-no-content-type",
    ),
    pytest.param(
        "/api/v1/dags/target/runs",
        '{"args": {"n": ' + "9" * 50 + "}}",
        _JSON,
        "args.n: integer out of range",
        id="trigger-50-digits",
    ),
    pytest.param(
        "/api/v1/dags/target/runs",
        '{"args": ' + _nested(DEEP) + "}",
        _JSON,
        "nested too deeply",
        id="trigger-nested",
    ),
    pytest.param(
        "/api/v1/dags/target/runs",
        '{"args": {"f": 1e999}}',
        _JSON,
        "args.f: NaN and infinity",
        id="trigger-infinity",
    ),
]


@pytest.fixture(scope="module")
def target(shared_kiok: Standalone) -> Standalone:
    shared_kiok.register("dag: {id: target}\ntasks: [{id: a, script: 'true'}]\n")
    return shared_kiok


@pytest.mark.parametrize(("path", "body", "headers", "problem"), BAD_INPUT)
def test_bad_input_is_a_400_naming_the_problem(
    target: Standalone, path: str, body: str, headers: dict[str, str], problem: str
) -> None:
    r = target.api("POST", path, content=body, headers=headers, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] in ("invalid_input", "invalid_dag")
    assert problem in r.json()["error"]["message"], r.text
    # Nothing got stuck: the command log still takes writes.
    assert target.api("POST", "/api/v1/dags/target/pause", timeout=10).status_code == 200
    assert target.api("POST", "/api/v1/dags/target/unpause", timeout=10).status_code == 200


def test_durations_are_capped_at_registration(target: Standalone) -> None:
    huge = "dag: {id: slow}\ntasks: [{id: a, script: 'true', timeout: 100000000000000000000000s}]\n"
    r = target.api("POST", "/api/v1/dags", content=huge, headers=_YAML, timeout=10)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert message.startswith("tasks[0].timeout: ") and "maximum of 365 days" in message
    delay = "dag: {id: slow}\ntasks: [{id: a, script: 'true', retries: 1, retry_delay: 366d}]\n"
    r = target.api("POST", "/api/v1/dags", content=delay, headers=_YAML, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("tasks[0].retry_delay: ")
    ok = "dag: {id: slow}\ntasks: [{id: a, script: 'true', timeout: 365d}]\n"
    assert target.api("POST", "/api/v1/dags", content=ok, headers=_YAML).status_code == 201


def test_every_answer_carries_the_security_headers(target: Standalone) -> None:
    k = target
    password = k.env["KIOK_IAM_ADMIN_PASSWORD"]
    answers = {
        "probe": httpx.get(k.url + "/healthz"),
        "login": _login(k, "admin", password),
        "wrong login": _login(k, "someone-else"),
        "no token": httpx.get(k.url + "/api/v1/dags"),
        "no endpoint": k.api("GET", "/api/v1/nothing-here"),
        "wrong method": k.api("PUT", "/api/v1/dags"),
        "too large": k.api("POST", "/api/v1/dags", content=b"x" * (10 * 1024 * 1024 + 1)),
        "too deep": k.api("POST", "/api/v1/dags", content=_nested(DEEP), headers=_JSON),
        "dag list": k.api("GET", "/api/v1/dags"),
    }
    assert answers["login"].status_code == 200 and answers["too large"].status_code == 413
    for what, r in answers.items():
        for name, value in (
            ("x-content-type-options", "nosniff"),
            ("content-security-policy", CONTENT_SECURITY_POLICY),
            ("referrer-policy", "no-referrer"),
            ("x-frame-options", "DENY"),
        ):
            assert r.headers.get_list(name) == [value], (what, name, r.headers)
        if what != "probe":
            assert r.headers.get_list("cache-control") == ["no-store"], (what, r.headers)
    assert "unsafe" not in CONTENT_SECURITY_POLICY and "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY


def test_drain_refuses_cross_site_requests_and_can_be_undone(kiok: Standalone) -> None:
    status = kiok.status_url

    def draining() -> bool:
        return bool(httpx.get(status + "/status").json()["draining"])

    token = kiok.status_auth  # read as the operator does, from the worker's data directory
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        r = httpx.post(status + "/drain", headers={**token, **headers})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (headers, r.text)
    assert not draining()
    assert r.headers["x-content-type-options"] == "nosniff"
    # DNS rebinding: a page of evil.example, its name now resolving to 127.0.0.1, is the
    # port's "own" origin to the browser: the name in Host gives it away.
    port = status.rsplit(":", 1)[1]
    rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    r = httpx.post(status + "/drain", headers={**token, **rebound})
    assert r.status_code == 403 and "DNS rebinding" in r.json()["error"]["message"], r.text
    assert not draining()
    local = {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"}
    assert httpx.post(status + "/undrain", headers={**token, **local}).status_code == 200

    assert httpx.post(status + "/drain", headers={**token, "Origin": status}).json()["draining"] is True
    assert draining()
    kiok.register("dag: {id: after_drain}\ntasks: [{id: a, script: 'true'}]\n")
    run_id = kiok.trigger("after_drain")
    kiok.wait_for(
        lambda: "draining" in str(kiok.run(run_id).get("waiting")),
        30,
        "the run to wait for the drained worker",
    )
    evil = {**token, "Origin": "http://evil.example"}
    assert httpx.delete(status + "/drain", headers=evil).status_code == 403
    assert draining()
    undone = httpx.delete(status + "/drain", headers=token)
    assert undone.status_code == 200 and undone.json()["draining"] is False
    assert kiok.wait_run(run_id)["state"] == "SUCCESS"

    assert httpx.post(status + "/drain", headers=token).status_code == 200 and draining()
    assert httpx.post(status + "/undrain", headers=token).json()["draining"] is False
    assert not draining()


def test_a_remote_worker_undrained_takes_runs_again(tmp_path: Path) -> None:
    master = Master(tmp_path / "master")
    worker: WorkerProcess | None = None
    try:
        master.start()
        worker = WorkerProcess(
            tmp_path / "w1", master.internal_address, "w1", {"KIOK_WORKER_JOIN_TOKEN": master.join_token()}
        )
        worker.start()
        master.wait_open()

        def master_sees_draining(value: bool) -> bool:
            [row] = master.api("GET", "/api/v1/cluster").json()["workers"]
            return bool(row["draining"]) is value

        token = worker.status_auth  # read as the operator does, from the worker's data directory
        assert httpx.post(worker.status_url + "/drain", headers=token).json()["draining"] is True
        master.wait_for(lambda: master_sees_draining(True), 10, "the master to see the drain")
        master.register("dag: {id: queued}\ntasks: [{id: a, script: 'true'}]\n")
        run_id = master.trigger("queued")
        master.wait_for(lambda: "draining" in str(master.run(run_id).get("waiting")), 30, "the run to wait")
        assert (
            httpx.post(
                worker.status_url + "/undrain", headers={**token, "Origin": "http://evil.example"}
            ).status_code
            == 403
        )
        assert httpx.post(worker.status_url + "/undrain", headers=token).json()["draining"] is False
        master.wait_for(lambda: master_sees_draining(False), 10, "the master to see the undrain")
        assert master.wait_run(run_id)["state"] == "SUCCESS"
    finally:
        if worker is not None:
            worker.stop()
        master.stop()
