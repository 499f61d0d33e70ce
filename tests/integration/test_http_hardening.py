"""Hostile requests against a real standalone get a clear 4xx naming the problem, cheaply:
a body of millions of tiny values (with or without a login), a header of megabytes, a body
that is not UTF-8, a repeated JSON key, a string where a number or boolean is documented, a
policy Resource that matches nothing, too many run ids, a path with a trailing slash."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kiok.roots.http_protocol import MAX_HEADER_BYTES
from kiok.testing.process import Standalone

BOMB = b'{"user":"x","password":"y","z":[' + b",".join([b"[]"] * 3_000_000) + b"]}"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def k(shared_kiok: Standalone) -> Iterator[Standalone]:
    yield shared_kiok


def _cpu_s(k: Standalone) -> float:
    """CPU time the standalone process has used (its event loop does the JSON checks)."""
    assert k.proc is not None
    fields = Path(f"/proc/{k.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _error(r: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = r.json()["error"]
    return error


@pytest.mark.parametrize("path", ["/nope", "/api/v1/auth/login"])
def test_a_value_bomb_without_credentials_is_refused_before_it_is_parsed(k: Standalone, path: str) -> None:
    before = _cpu_s(k)
    r = k.http("POST", k.url + path, content=BOMB, headers=JSON, timeout=30)
    assert r.status_code == 413, r.text
    assert _error(r)["code"] == "payload_too_large"
    assert "without valid credentials" in _error(r)["message"]
    # Parsed and walked on the event loop it cost 4-5 s of CPU; now the body is not even read.
    assert _cpu_s(k) - before < 1.0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_large_body_with_an_expired_token_gets_401_so_the_client_refreshes(
    k: Standalone, chunked: bool
) -> None:
    """The CLI and the UI refresh their token on a 401 and send again: a 413 for a large DAG
    sent with an expired (or otherwise refused) token would end there."""
    body = b'{"x": "' + b"a" * (200 * 1024) + b'"}'
    content: bytes | Iterator[bytes] = iter([body[:1000], body[1000:]]) if chunked else body
    headers = {**JSON, "Authorization": "Bearer not.a.token"}
    r = k.http("POST", k.url + "/api/v1/dags", content=content, headers=headers, timeout=30)
    assert r.status_code == 401, r.text
    assert _error(r)["code"] == "unauthenticated" and r.headers["WWW-Authenticate"] == "Bearer"
    anonymous = k.http("POST", k.url + "/api/v1/dags", content=body, headers=JSON, timeout=30)
    assert anonymous.status_code == 413, anonymous.text


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("Bearer", "no token after 'Bearer'"),
        ("token", "no token after 'token'"),
        ("Basic YWRtaW46YWRtaW4=", "unsupported Authorization scheme"),
    ],
)
def test_an_authorization_header_is_refused_saying_what_is_wrong_with_it(
    k: Standalone, header: str, says: str
) -> None:
    r = k.http("GET", k.url + "/api/v1/me", headers={"Authorization": header})
    assert r.status_code == 401 and says in _error(r)["message"], r.text


def test_a_value_bomb_with_a_token_is_refused_by_counting(k: Standalone) -> None:
    before = _cpu_s(k)
    r = k.api("POST", "/api/v1/dags", content=BOMB, headers=JSON)
    assert r.status_code == 400, r.text
    assert _error(r) == {"code": "invalid_input", "message": "JSON body too large: over 200000 values"}
    assert _cpu_s(k) - before < 1.0  # reading 9 MB, counting it: well under a second
    assert k.http("GET", k.url + "/healthz").status_code == 200


@pytest.mark.parametrize(
    "head",
    [
        b"X-Big: " + b"x" * (MAX_HEADER_BYTES + 1) + b"\r\n\r\n",
        b"X-Big: " + b"x" * (4 * MAX_HEADER_BYTES) + b"\r\n\r\n",
        # One header that never ends (20 MiB of it), held whole by the parser until it did.
        b"X-Big: " + b"x" * (20 << 20),
    ],
    ids=["just-over", "four-times", "never-ending"],
)
def test_a_header_past_the_limit_gets_431(k: Standalone, head: bytes) -> None:
    answer = _send_until_answered(k, b"GET /healthz HTTP/1.1\r\nHost: k\r\n" + head)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b'"headers_too_large"' in answer


def test_a_trailer_that_never_ends_gets_431(k: Standalone) -> None:
    """A chunked request's trailer is header fields too, held whole by the parser until it
    ends: past the body, bytes that bring none are counted like a head's."""
    request = b"POST /nope HTTP/1.1\r\nHost: k\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n"
    answer = _send_until_answered(k, request + b"X-Trailer: " + b"x" * (20 << 20))
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def _send_until_answered(k: Standalone, request: bytes) -> bytes:
    """``request`` sent piece by piece until an answer comes, and the answer."""
    host, port = k.url.split("://", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=15) as s:
        # Sent piece by piece until the answer comes: what the server never reads, it resets.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for at in range(0, len(request), 1 << 16):
                s.sendall(request[at : at + (1 << 16)])
                if select.select([s], [], [], 0)[0]:
                    break
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(4096):
                answer += chunk
    return answer


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /\xff HTTP/1.1\r\nHost: k\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: k\r\nX-A: a\x01b\r\n\r\n",
        b"POST /nope HTTP/1.1\r\nHost: k\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ],
    ids=["raw-byte-in-path", "control-char-in-header", "two-content-lengths"],
)
def test_a_request_the_parser_cannot_read_gets_a_json_400(k: Standalone, request_bytes: bytes) -> None:
    """uvicorn answered these with text/plain "Invalid HTTP request received."."""
    answer = _send_until_answered(k, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"content-type: application/json" in head.lower(), head
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_input" and "malformed HTTP request" in error["message"]


def test_a_header_just_under_the_limit_is_served(k: Standalone) -> None:
    r = k.http("GET", k.url + "/healthz", headers={"X-Big": "x" * (MAX_HEADER_BYTES - 1024)})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("body", [b"\xff", b'{"user": "\xff", "password": "y"}'])
def test_a_body_that_is_not_utf8_is_invalid_input_saying_so(k: Standalone, body: bytes) -> None:
    r = k.http("POST", k.url + "/api/v1/auth/login", content=body, headers=JSON)
    assert r.status_code == 400, r.text
    assert _error(r)["code"] == "invalid_input"
    assert "not UTF-8" in _error(r)["message"]


#: Spellings of a JSON content type FastAPI parses as JSON (read by ``email.message``); checked
#: on bytes, those ending in a no-break space or NEL skipped every check (attacker probe, s29).
JSON_SPELLINGS = [
    b"application/json",
    b"application/json\xa0",
    b"\xa0application/json",
    b"application/json\x85",
    b"Application/JSON ; charset=utf-8",
    b"application/vnd.kiok+json",
]


@pytest.mark.parametrize("content_type", JSON_SPELLINGS)
def test_a_value_bomb_in_any_json_spelling_is_refused(k: Standalone, content_type: bytes) -> None:
    r = k.api("POST", "/api/v1/dags/none/runs", content=BOMB, headers={"Content-Type": content_type})
    assert (r.status_code, _error(r)["message"]) == (400, "JSON body too large: over 200000 values")


@pytest.mark.parametrize("content_type", JSON_SPELLINGS)
@pytest.mark.parametrize(
    ("body", "key"),
    [
        (
            b'{"policy": "dup", "policy": "full-access", "document": {"Statement": '
            b'[{"Effect": "Allow", "Action": "dags:List", "Resource": "*"}]}}',
            "policy",
        ),
        (
            b'{"policy": "dup", "document": {"Statement": '
            b'[{"Effect": "Deny", "Action": "*", "Resource": "*", "Effect": "Allow"}]}}',
            "Effect",
        ),
    ],
)
def test_a_repeated_json_key_is_refused_naming_it(
    k: Standalone, body: bytes, key: str, content_type: bytes
) -> None:
    r = k.api("POST", "/api/v1/iam/policies", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 400, r.text
    assert _error(r)["code"] == "invalid_input"
    assert f"duplicate key {key!r}" in _error(r)["message"]
    full = k.api("GET", "/api/v1/iam/policies/full-access").json()
    assert "dags:List" not in str(full)  # the built-in policy is untouched


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/admin/join-tokens", {"ttlSeconds": "3600"}, "ttlSeconds"),
        ("/api/v1/admin/join-tokens", {"ttlSeconds": 3600.0}, "ttlSeconds"),
        ("/api/v1/runs/nope-1-1/rerun", {"onlyFailed": "yes"}, "onlyFailed"),
    ],
)
def test_a_value_of_another_type_than_documented_is_refused(
    k: Standalone, path: str, body: dict[str, Any], field: str
) -> None:
    r = k.api("POST", path, json=body)
    assert r.status_code == 400, r.text
    assert _error(r)["code"] == "invalid_input"
    assert field in _error(r)["message"]


@pytest.mark.parametrize("resource", ["cluster/*", "dag/x\u0000"])
def test_a_policy_resource_that_matches_nothing_is_refused(k: Standalone, resource: str) -> None:
    document = {"Statement": [{"Effect": "Allow", "Action": "dags:List", "Resource": resource}]}
    r = k.api("POST", "/api/v1/iam/policies", json={"policy": "nothing", "document": document})
    assert r.status_code == 400, r.text
    assert "Resource" in _error(r)["message"]


def test_more_run_ids_than_the_grid_takes_are_refused(k: Standalone) -> None:
    k.register("dag: {id: hardening_grid}\ntasks:\n  - {id: a, script: 'true'}\n")
    ids = ",".join(f"hardening_grid-1-{i}" for i in range(101))
    r = k.api("GET", f"/api/v1/dags/hardening_grid/grid?runs={ids}")
    assert r.status_code == 400, r.text
    assert _error(r) == {"code": "invalid_input", "message": "query.runs: 101 run ids; at most 100"}
    assert k.api("GET", f"/api/v1/dags/hardening_grid/grid?runs={ids.rsplit(',', 1)[0]}").status_code == 200


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_trailing_slash_is_a_json_404_not_a_redirect(k: Standalone, method: str) -> None:
    r = k.http(method, k.url + "/api/v1/dags/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert r.status_code == 404, (r.status_code, r.headers)
    assert "location" not in r.headers
    assert r.json() == {"error": {"code": "not_found", "message": "no such endpoint"}}
