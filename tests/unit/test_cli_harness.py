"""A fake master for the CLI tests: canned answers per route, every request recorded.

Imported by the other ``test_cli_*`` modules; ``FakeMaster.invoke`` runs the real ``kiok``
group through ``CliRunner`` with an ``httpx.MockTransport``, a recording sleep, a fixed clock
and a private config directory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner, Result

from kiok.cli.context import Runtime
from kiok.cli.main import cli

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


def reply(status: int = 200, body: Any = None) -> httpx.Response:
    return httpx.Response(status, json=body) if body is not None else httpx.Response(status)


def fail(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


class FakeMaster:
    """Answers ``(method, path)`` with queued answers (the last one repeats)."""

    def __init__(self, config_home: Path) -> None:
        self.config_home = config_home
        self.routes: dict[tuple[str, str], list[Answer]] = {}
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.routes[(method, path)] = list(answers)

    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        queue = self.routes.get((request.method, request.url.path))
        if not queue:
            return fail(404, "not_found", f"no route {request.method} {request.url.path}")
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return answer(request) if callable(answer) else answer

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]

    @property
    def credentials_file(self) -> Path:
        return self.config_home / "kiok" / "credentials.json"

    def invoke(
        self,
        args: Sequence[str],
        input: str | None = None,
        env: dict[str, str | None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> Result:
        runtime = Runtime(
            transport=transport or httpx.MockTransport(self.handle),
            sleep=self.sleeps.append,
            now=lambda: NOW,
        )
        base_env: dict[str, str | None] = {
            "XDG_CONFIG_HOME": str(self.config_home),
            "KIOK_MASTER": None,
            "KIOK_USER_TOKEN": None,
        }
        return CliRunner().invoke(
            cli, list(args), input=input, env={**base_env, **(env or {})}, obj=runtime, catch_exceptions=False
        )


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)
