"""``kiok.logs``: JSON lines that name the process and what they are about; the ids flow
from context variables into tasks started under them; library chatter stays below INFO."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from kiok import logs
from kiok.master import http_errors
from kiok.roots.common import http_server
from kiok.roots.http_protocol import HttpLimits
from kiok.security.tls import TlsFiles


def test_json_lines_carry_service_instance_and_context_ids(restore_logging: None) -> None:
    out = io.StringIO()
    logs.setup("INFO", "json", "worker", stream=out)
    logs.identify("w7")
    log = logging.getLogger("kiok.test")

    async def attempt() -> None:
        logs.TASK_ID.set("t1")
        log.info("inside %s", "attempt")

    async def drive() -> None:
        logs.RUN_ID.set("r1")
        await asyncio.create_task(attempt())  # the task inherits the run id
        log.warning("after")

    asyncio.run(drive())
    log.info("outside", extra={"requestId": "q1"})
    logging.getLogger("httpx").info("HTTP Request: GET http://leader/cluster/health")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["msg"], x.get("runId"), x.get("taskId"), x.get("requestId")) for x in lines] == [
        ("inside attempt", "r1", "t1", None),
        ("after", "r1", None, None),
        ("outside", None, None, "q1"),
    ]
    assert all(x["service"] == "worker" and x["instance"] == "w7" for x in lines)
    assert lines[0]["level"] == "INFO" and lines[0]["logger"] == "kiok.test" and lines[0]["ts"].endswith("Z")


def test_text_lines_show_the_ids_and_an_unknown_format_is_refused(restore_logging: None) -> None:
    out = io.StringIO()
    logs.setup("INFO", "text", "master", "m2", stream=out)
    token = logs.REQUEST_ID.set("abc")
    try:
        logging.getLogger("kiok.test").info("hello")
    finally:
        logs.REQUEST_ID.reset(token)
    assert out.getvalue().rstrip().endswith("kiok.test: hello [req=abc]")
    with pytest.raises(ValueError, match=r"kiok\.log\.format"):
        logs.setup("INFO", "yaml", "master")


@pytest.mark.parametrize("fmt", ["json", "text"])
async def test_an_unexpected_error_of_a_request_is_logged_once_in_kiok_s_format(
    fmt: str, restore_logging: None, capfd: pytest.CaptureFixture[str]
) -> None:
    """uvicorn logged "Exception in ASGI application" on a handler of its own, in its own
    format (a plain-text traceback in a JSON log), after kiok's record of the same error
    (which Starlette re-raises once it has answered 500): the traceback was there twice."""
    app = FastAPI()
    http_errors.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    logs.setup("INFO", fmt, "master")
    server = http_server(app, "127.0.0.1", 0, TlsFiles("", "", ""), HttpLimits())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        host, port = sock.getsockname()
        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.get(f"http://{host}:{port}/boom")
        assert answer.status_code == 500, answer.text
    finally:
        server.should_exit = True
        await serving
    err = capfd.readouterr().err
    assert err.count("Traceback") == 1 and "Exception in ASGI application" not in err, err
    if fmt == "json":
        records = [json.loads(line) for line in err.splitlines() if line.strip()]
        assert [r["msg"] for r in records if "exc" in r] == ["unexpected error on GET /boom"], err
        assert "RuntimeError: boom" in records[-1]["exc"]
    else:
        assert "ERROR kiok.master.http_errors: unexpected error on GET /boom" in err, err


def test_uvicorn_s_own_lines_go_through_kiok_s_handler(restore_logging: None) -> None:
    """Whatever uvicorn logs (a bind error, a protocol error) is a line of kiok's log, even
    when a uvicorn ``Config`` with its own logging was made before."""
    uvicorn.Config(FastAPI())  # installs uvicorn's handlers, formatters, propagate off
    out = io.StringIO()
    logs.setup("INFO", "json", "master", stream=out)
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    assert json.loads(out.getvalue())["logger"] == "uvicorn.error"
