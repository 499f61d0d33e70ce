"""An http task whose request cannot even be built — a header or method a param made
non-ASCII, a URL with a port that is no number — fails with an error saying why, as any
other task failure; it never leaves its run RUNNING (it did: the attempt's coroutine died
with the exception, so neither the timeout nor a cancel could end it). A secret in such a
URL shows nowhere unmasked, in the task's error or the process log."""

from __future__ import annotations

from kiok.testing.process import Standalone

SECRET = "s3cr-et-http-7431"


def test_an_http_request_that_cannot_be_built_fails_its_task(kiok: Standalone) -> None:
    created = kiok.api(
        "POST", "/api/v1/connections", json={"connectionId": "tok", "properties": {"value": SECRET}}
    )
    assert created.status_code == 201, created.text
    kiok.register(
        """
dag: {id: bad_http, params: {x: {type: string, default: plain}}}
tasks:
  - {id: header, type: http, timeout: 60s,
     config: {url: "http://127.0.0.1:9/", headers: {X-A: "${params.x}"}}}
  - {id: method, type: http, timeout: 60s,
     config: {url: "http://127.0.0.1:9/", method: "${params.x}"}}
  - {id: port, type: http, timeout: 60s, config: {url: "http://user:${secret.tok}@127.0.0.1:${params.x}/"}}
"""
    )
    run_id = kiok.trigger("bad_http", {"x": "ü"})
    run = kiok.wait_run(run_id, 30)
    assert run["state"] == "FAILED", run
    for tid in ("header", "method", "port"):
        task = run["tasks"][tid]
        assert task["state"] == "FAILED", (tid, task)
        assert task["error"], (tid, task)
        assert SECRET not in task["error"], (tid, task)
        assert SECRET not in kiok.log(run_id, tid)
    assert "config.headers: the value of 'X-A' holds a character" in run["tasks"]["header"]["error"], run
    assert "config.method: unknown method 'Ü'" in run["tasks"]["method"]["error"], run
    assert "could not build the request" in run["tasks"]["port"]["error"], run["tasks"]["port"]
    assert SECRET not in kiok.read_log()
    assert "Traceback" not in kiok.read_log() and " ERROR " not in kiok.read_log()


def test_a_piece_of_a_secret_in_an_unbuildable_url_is_not_quoted(kiok: Standalone) -> None:
    """Found by the security re-probe (session 27): a password holding ``#`` ends the URL's
    authority there, so httpx read the rest as a port and said ``Invalid port:
    'Sup3rS3cretPw'``: a piece of the secret, which masking (whole values) let through into
    the task's error and the run log."""
    created = kiok.api(
        "POST",
        "/api/v1/connections",
        json={"connectionId": "h1", "properties": {"pw": "Sup3rS3cretPw#Tail9"}},
    )
    assert created.status_code == 201, created.text
    kiok.register(
        'dag: {id: bad_http_piece}\ntasks:\n  - {id: t, type: http, config: {url: "http://svc:${conn.h1.pw}@127.0.0.1:9/x"}}\n'
    )
    run_id = kiok.trigger("bad_http_piece")
    run = kiok.wait_run(run_id, 30)
    error = run["tasks"]["t"]["error"]
    assert run["state"] == "FAILED" and "could not build the request: InvalidURL" in error, run
    for seen in (error, kiok.log(run_id, "__run__"), kiok.log(run_id, "t")):
        assert "Sup3rS3cret" not in seen, seen
