"""A worker connection that ends while a frame to the worker is failing leaves nothing behind:
no task whose exception nobody retrieves ("Task exception was never retrieved", a traceback in
the master's log). Found by the chaos soak (seed 14): the worker's read side ended (it was
killed) while the write of a frame to it was failing (broken pipe); the write loop, cancelled
then, ended with that error, and nobody awaited it."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from kiok.master.internal_server import InternalServer, WorkerConnection
from kiok.protocol.to_worker import Cancel
from tests.unit.test_internal_server_lost_timer import Node


class Writer:
    """A connection whose pending write fails once ``broken`` is set."""

    def __init__(self) -> None:
        self.broken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        await self.broken

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str) -> Any:
        return ("10.0.0.7", 40000)


async def test_a_write_failing_as_the_connection_ends_leaves_no_unretrieved_error() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        server = InternalServer(Node())  # type: ignore[arg-type]
        reader = asyncio.StreamReader()
        writer = Writer()
        conn = WorkerConnection(server, reader, writer, "w1", "10.0.0.7:40000", (), 2)  # type: ignore[arg-type]
        serving = asyncio.create_task(conn.serve())
        conn.send(Cancel("r1", None))
        for _ in range(5):
            await asyncio.sleep(0)  # the frame is being written: its drain waits
        reader.feed_eof()  # the worker is gone: the connection ends...
        for _ in range(3):
            await asyncio.sleep(0)
        # ...as the write fails. (A drain awaited in the write loop's own task, not in one
        # ``asyncio.wait_for`` wrapped it in, is cancelled with the loop: then nothing fails.)
        if not writer.broken.done():
            writer.broken.set_exception(BrokenPipeError(32, "Broken pipe"))
        await serving
        del serving, conn
        for _ in range(5):
            await asyncio.sleep(0)
        gc.collect()
        assert [c["message"] for c in reported] == []
    finally:
        loop.set_exception_handler(None)
