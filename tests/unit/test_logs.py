"""``kiok.logs``: JSON lines that name the process and what they are about; the ids flow
from context variables into tasks started under them; library chatter stays below INFO."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from kiok import logs


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


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
