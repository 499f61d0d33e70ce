"""The http executor gets its config with placeholders resolved, so a trigger arg, a
connection or the server it calls may make any field anything. Whatever they make of it,
the attempt fails saying what is wrong; nothing raises out of the executor (the driver would
log an ERROR and blame kiok for a DAG author's or a user's input)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kiok.core.placeholders import Context, resolve
from kiok.dag.spec import TaskSpec, TaskType
from kiok.ids import TaskId
from kiok.master.views import own_error
from kiok.worker.executors.base import AttemptContext, AttemptResult
from kiok.worker.executors.http import HttpExecutor
from kiok.worker.stop import StopSignal


@pytest.fixture
async def server() -> AsyncIterator[str]:
    """A server answering ``/`` with 200, ``/away`` with a redirect to port 99999 and ``/busy``
    with 503."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"GET /busy"):
            writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        elif head.startswith(b"GET /away "):
            writer.write(
                b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:99999/\r\nContent-Length: 0\r\n\r\n"
            )
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    listening = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield f"http://127.0.0.1:{port}/"


async def attempt(config: dict[str, str]) -> AttemptResult:
    task = TaskSpec(id=TaskId("t"), type=TaskType.HTTP, config=config)
    ctx = AttemptContext(
        run_id="r",
        task=task,
        attempt=1,
        work_dir=Path("/nonexistent"),
        env={},
        timeout_s=10,
        grace_s=1,
        stop=StopSignal(),
        output=lambda _: None,
        tail=lambda: b"",
    )
    return await HttpExecutor(connect_timeout_s=5).run(ctx)


async def test_a_good_request_succeeds(server: str) -> None:
    result = await attempt({"url": server, "method": "post", "headers": '{"X-A": "b"}', "body": "é"})
    assert result.ok and result.detail == "HTTP 200", result


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"method": "é"}, "config.method: unknown method 'É'; allowed: GET, POST, PUT, PATCH, DELETE, HEAD"),
        ({"method": "G T"}, "config.method: unknown method 'G T'"),
        ({"method": "GET\r\nX: y"}, "config.method: unknown method"),
        ({"method": ""}, "config.method: unknown method ''"),
    ],
)
async def test_a_method_that_is_no_http_method_fails_the_attempt(
    server: str, config: dict[str, str], error: str
) -> None:
    result = await attempt({"url": server, **config})
    assert not result.ok and result.error is not None and error in result.error, result


@pytest.mark.parametrize(
    "headers",
    ["[1]", '["a"]', '[["a", "b"]]', "5", "true", '"abc"', "null", '{"a": null}', '{"a": 5}', "{", " "],
)
async def test_headers_that_are_no_object_of_strings_fail_the_attempt(server: str, headers: str) -> None:
    result = await attempt({"url": server, "headers": headers})
    assert not result.ok and result.error is not None, result
    assert result.error.startswith("config.headers: expected a JSON object of header names to string values")


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ('{"a\\r\\nb": "x"}', "config.headers: 'a\\r\\nb' is not a header name"),
        ('{"": "x"}', "config.headers: '' is not a header name"),
        ('{"é": "x"}', "config.headers: 'é' is not a header name"),
        (
            '{"X-A": "x\\r\\nY: z"}',
            "config.headers: the value of 'X-A' holds a character a header cannot carry",
        ),
        ('{"X-A": "é"}', "config.headers: the value of 'X-A' holds a character a header cannot carry"),
        ('{"X-A": "\\u0000"}', "config.headers: the value of 'X-A' holds a character a header cannot carry"),
    ],
)
async def test_header_names_and_values_a_request_cannot_carry_fail_the_attempt(
    server: str, headers: str, error: str
) -> None:
    result = await attempt({"url": server, "headers": headers})
    assert not result.ok and result.error is not None and result.error.startswith(error), result


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://127.0.0.1:99999/", "port 99999 is out of range"),
        ("http://\ud800/", "could not build the request"),
        ("http://127.0.0.1:9/\r\nx", "could not build the request"),
        ("http://xn--a.com/", "could not build the request"),
    ],
)
async def test_a_url_no_request_can_go_to_fails_the_attempt(url: str, error: str) -> None:
    result = await attempt({"url": url})
    assert not result.ok and result.error is not None and error in result.error, result


async def test_a_redirect_to_no_port_fails_the_attempt(server: str) -> None:
    result = await attempt({"url": server + "away"})
    assert not result.ok and result.error is not None and "port 99999 is out of range" in result.error, result


async def test_a_body_that_is_no_text_fails_the_attempt(server: str) -> None:
    result = await attempt({"url": server, "method": "POST", "body": "\ud800"})
    assert not result.ok and result.error is not None and "could not build the request" in result.error, (
        result
    )


_SHAPE = "config.headers: expected a JSON object of header names to string values"


def _placed_headers(value: object) -> str:
    """What ``headers: ${params.h}`` becomes for param value ``value`` (as the driver places
    it: a JSON literal, so a string param is a JSON string)."""
    return resolve("${params.h}", params={"h": value}, lookup_conn=None, now_ms=0, context=Context.JSON)


@pytest.mark.parametrize("value", [{"X-A": "1"}, '{"X-A": "1"}'])
async def test_headers_from_a_param_holding_the_object_or_its_json_are_sent(value: object) -> None:
    """docs/dags.md: headers may be a string holding the JSON object, or a placeholder that
    resolves to one: a param that is the object, or a string of its JSON (a ``--arg``)."""
    heads: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    listening = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening:
        result = await attempt({"url": f"http://127.0.0.1:{port}/", "headers": _placed_headers(value)})
    assert result.ok, result
    assert b"\r\nx-a: 1\r\n" in heads[0].lower(), heads


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (
            '{"X-A": "1\\r\\nInjected: y"}',
            "config.headers: the value of 'X-A' holds a character a header cannot carry",
        ),
        ('{"X\\r\\nY": "1"}', "config.headers: 'X\\r\\nY' is not a header name"),
        (
            "[1]",
            f"{_SHAPE}, got a string holding an array",
        ),
        (
            "abc",
            f"{_SHAPE}, got a string that is not JSON",
        ),
        (
            '"{\\"X-A\\": \\"1\\"}"',
            f"{_SHAPE}, got a string holding a string",
        ),
        (
            '{"X-A": 5}',
            "config.headers: expected a JSON object of header names to string values; the value of 'X-A'",
        ),
    ],
)
async def test_a_string_param_that_is_no_safe_header_object_fails_the_attempt(
    server: str, value: str, error: str
) -> None:
    result = await attempt({"url": server, "headers": _placed_headers(value)})
    assert not result.ok and result.error is not None and result.error.startswith(error), result


async def test_only_errors_quoting_the_server_are_cut_for_readers_of_states_alone(server: str) -> None:
    """Found by the review of the quoted form: a URL ending like kiok's own part of an error
    (" (Name from GET x)", " (exit code 0)") made a caller without ``logs:Read`` read its text
    instead of "HTTP 503": whitespace in a URL is shown escaped. A refused connection takes
    the quoted form too (a TLS failure's text names the host a redirect chose)."""
    busy = await attempt({"url": server + "busy?note= (Succeeded from GET cache)"})
    assert busy.error == f"HTTP 503 from GET {server}busy?note=%20(Succeeded%20from%20GET%20cache)", busy
    assert own_error(busy.error) == busy.error
    refused = await attempt({"url": "http://127.0.0.1:9/x (exit code 0)"})
    own = "ConnectError from GET http://127.0.0.1:9/x%20(exit%20code%200)"
    assert refused.error is not None and refused.error.endswith(f" ({own})"), refused
    assert own_error(refused.error) == own
