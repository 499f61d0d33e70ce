"""``/api/v1/openapi.json``: the API's OpenAPI document, behind authentication like
every other ``/api/v1`` endpoint."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from kiok.master.api.deps import require
from kiok.master.auth import Principal
from kiok.security import actions


def install(app: FastAPI) -> None:
    cache: dict[str, Any] = {}

    @app.get("/api/v1/openapi.json", include_in_schema=False)
    async def openapi_document(_: Principal = Depends(require(actions.READ_API_SCHEMA))) -> dict[str, Any]:
        if not cache:
            cache.update(get_openapi(title=app.title, version=app.version, routes=app.routes))
        return cache
