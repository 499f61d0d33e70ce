"""The ``kiok`` group: --master parsing, error printing and exit codes, --json passthrough."""

from __future__ import annotations

import json
from pathlib import Path

import click
import httpx
import pytest

from kiok import errors
from kiok.cli.client import error_from_response
from kiok.cli.masters import master_url
from kiok.cli.output import duration, table
from tests.unit.test_cli_harness import FakeMaster, fail, reply


@pytest.fixture
def master(tmp_path: Path) -> FakeMaster:
    return FakeMaster(tmp_path / "config")


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("localhost:8080", "http://localhost:8080"),
        ("10.0.0.5:9000", "http://10.0.0.5:9000"),
        ("kiok-master", "http://kiok-master:8080"),
        ("[::1]:8081", "http://[::1]:8081"),
        ("http://kiok.example", "http://kiok.example"),
        ("https://kiok.example:8443/", "https://kiok.example:8443"),
        ("https://gw.example/kiok/", "https://gw.example/kiok"),
    ],
)
def test_master_url(given: str, url: str) -> None:
    assert master_url(given) == url


@pytest.mark.parametrize("bad", ["ftp://x", "host:notaport", "http://", "http://h:1?x=1"])
def test_master_url_refuses(bad: str) -> None:
    with pytest.raises(click.BadParameter):
        master_url(bad)


def test_master_option_env_and_default(master: FakeMaster) -> None:
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return reply(200, {"dags": []})

    transport = httpx.MockTransport(record)
    master.invoke(["dags", "list"], transport=transport)
    master.invoke(["dags", "list"], env={"KIOK_MASTER": "m1:9090"}, transport=transport)
    master.invoke(
        ["--master", "https://m2", "dags", "list"], env={"KIOK_MASTER": "m1:9090"}, transport=transport
    )
    assert seen == [
        "http://localhost:8080/api/v1/dags",
        "http://m1:9090/api/v1/dags",
        "https://m2/api/v1/dags",
    ]


def test_bad_master_is_a_usage_error(master: FakeMaster) -> None:
    result = master.invoke(["--master", "ftp://x", "dags", "list"])
    assert result.exit_code == 2
    assert master.requests == []


def test_server_error_prints_message_and_exits_1(master: FakeMaster) -> None:
    master.on("GET", "/api/v1/runs/nope", fail(404, "not_found", "run 'nope' not found"))
    result = master.invoke(["runs", "status", "nope"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "error: run 'nope' not found\n"


def test_error_with_json_flag_is_json_on_stderr(master: FakeMaster) -> None:
    master.on("POST", "/api/v1/dags/etl/runs", fail(409, "dag_paused", "DAG 'etl' is paused"))
    for args in (["--json", "trigger", "etl"], ["trigger", "etl", "--json"]):
        result = master.invoke(args)
        assert result.exit_code == 1
        assert result.stdout == ""
        assert json.loads(result.stderr) == {
            "error": {"code": "dag_paused", "message": "DAG 'etl' is paused"}
        }


def test_not_ready_and_non_json_errors(master: FakeMaster) -> None:
    master.on("GET", "/api/v1/dags", fail(503, "not_ready", "waiting for workers"))
    master.on("GET", "/api/v1/runs", httpx.Response(502, text="<html>Bad Gateway</html>"))
    assert master.invoke(["dags", "list"]).stderr == "error: waiting for workers\n"
    result = master.invoke(["runs", "list"])
    assert result.exit_code == 1
    assert result.stderr == "error: HTTP 502 Bad Gateway: <html>Bad Gateway</html>\n"


def test_connection_refused_is_one_clear_line(master: FakeMaster) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    result = master.invoke(["--master", "m:1", "dags", "list"], transport=httpx.MockTransport(refuse))
    assert result.exit_code == 1
    assert result.stderr == (
        "error: cannot reach kiok master at http://m:1: [Errno 111] Connection refused"
        " (check --master or KIOK_MASTER)\n"
    )
    assert "Traceback" not in result.output


def test_a_master_that_closes_without_an_answer_may_speak_https(master: FakeMaster) -> None:
    """What a TLS master does with a request in plain text: the hint says to try https."""

    def hang_up(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)

    result = master.invoke(
        ["--master", "127.0.0.1:18584", "dags", "list"], transport=httpx.MockTransport(hang_up)
    )
    assert result.exit_code == 1
    assert result.stderr == (
        "error: cannot talk to kiok master at http://127.0.0.1:18584: Server disconnected without "
        "sending a response. (it closed the connection without an HTTP answer: if it serves TLS, "
        "use https://127.0.0.1:18584)\n"
    )
    # Over https already, or another protocol error: no such hint.
    result = master.invoke(
        ["--master", "https://m:1", "dags", "list"], transport=httpx.MockTransport(hang_up)
    )
    assert "if it serves TLS" not in result.stderr

    def garbled(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("illegal status line", request=request)

    result = master.invoke(["--master", "m:1", "dags", "list"], transport=httpx.MockTransport(garbled))
    assert result.stderr == "error: cannot talk to kiok master at http://m:1: illegal status line\n"


def test_real_refused_connection(master: FakeMaster) -> None:
    # A real socket to a port nothing listens on.
    result = master.invoke(
        ["--master", "127.0.0.1:1", "--timeout", "5", "dags", "list"], transport=httpx.HTTPTransport()
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach kiok master at http://127.0.0.1:1")


def test_timeout_is_reported(master: FakeMaster) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    result = master.invoke(["--timeout", "2.5", "runs", "list"], transport=httpx.MockTransport(slow))
    assert result.exit_code == 1
    assert result.stderr == "error: kiok master at http://localhost:8080 did not answer within 2.5s\n"


def test_success_that_is_not_json_is_an_error(master: FakeMaster) -> None:
    master.on(
        "GET", "/api/v1/dags", httpx.Response(200, text="hello", headers={"content-type": "text/plain"})
    )
    result = master.invoke(["dags", "list"])
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: unexpected answer from http://localhost:8080/api/v1/dags: not JSON"
    )


def test_json_passthrough_is_exactly_the_server_document(master: FakeMaster) -> None:
    doc = {"runId": "r1", "state": "SUCCESS", "tasks": {"a": {"state": "SUCCESS", "extra": [1, "ü"]}}}
    master.on("GET", "/api/v1/runs/r1", reply(200, doc))
    result = master.invoke(["--json", "runs", "status", "r1"])
    assert json.loads(result.stdout) == doc


def test_empty_success_body_prints_empty_object_with_json(master: FakeMaster) -> None:
    master.on("POST", "/api/v1/dags/etl/pause", httpx.Response(204))
    result = master.invoke(["--json", "dags", "pause", "etl"])
    assert json.loads(result.stdout) == {}


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_dag", errors.DagValidationError),
        (403, "forbidden", errors.Forbidden),
        (409, "illegal_transition", errors.IllegalTransition),
        (503, "not_ready", errors.NotReady),
        (404, None, errors.NotFound),
        (500, "some_new_code", errors.KiokError),
    ],
)
def test_errors_are_typed_by_wire_code(status: int, code: str | None, cls: type[errors.KiokError]) -> None:
    answer = {"error": {"code": code, "message": "m"}} if code else {"error": {"message": "m"}}
    exc = error_from_response(httpx.Response(status, json=answer))
    assert type(exc) is cls
    assert exc.message == "m"
    if code:
        assert exc.code == code


def test_usage_error_exit_code(master: FakeMaster) -> None:
    assert master.invoke(["runs", "status"]).exit_code == 2
    assert master.invoke(["no-such-command"]).exit_code == 2


def test_table_and_duration_formatting() -> None:
    assert table(["A", "BB"], [["xyz", "1"], ["q", "22"]]) == "A    BB\nxyz  1\nq    22"
    assert [duration(s) for s in (0.25, 12.34, 245, 7380, 100000)] == [
        "250ms",
        "12.3s",
        "4m05s",
        "2h03m",
        "1d03h",
    ]
    assert [duration(s) for s in (3.0, 300, 3600, 86400, 90000)] == ["3s", "5m", "1h", "1d", "1d01h"]
