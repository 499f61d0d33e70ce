"""The worker's status port (19998): ``/health``, ``/ready``, ``/status``, ``POST /drain``,
``/cluster/health``. Plain Starlette: four routes need no OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kiok.worker.worker import Worker


def create_status_app(worker: Worker, master_connection: Callable[[], str]) -> Starlette:
    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> JSONResponse:
        state = master_connection()
        if state == "connected":
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "masterConnection": state}, status_code=503)

    async def status(_: Request) -> JSONResponse:
        return JSONResponse(worker.status(master_connection()))

    async def drain(_: Request) -> JSONResponse:
        worker.start_drain()
        return JSONResponse({"draining": True, "activeRuns": len(worker.active_runs)})

    async def cluster_health(_: Request) -> JSONResponse:
        state = master_connection()
        return JSONResponse(
            {"status": "healthy" if state == "connected" else "unhealthy", "masterConnection": state}
        )

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/ready", ready),
            Route("/status", status),
            Route("/drain", drain, methods=["POST"]),
            Route("/cluster/health", cluster_health),
        ]
    )
