"""A client watching a run, as the UI and ``kiok runs status --wait`` do: it reads
``GET /api/v1/runs/{id}?since=<the version it holds>`` and patches its copy with the tasks
that changed (the whole run when the answer says ``"full": true``).

Two HTTP clients, because on this 2-core machine the watching client's own CPU is taken
from the run it watches, and that share is the client's, not kiok's:

- ``lean``: one keep-alive ``http.client`` connection and ``json.loads`` (~0.3 ms of CPU a
  read, about what a browser's ``fetch`` and ``JSON.parse`` cost);
- ``httpx``: the client the CLI uses (~2.5-3.5 ms of CPU a read: request and response
  objects, header models, its connection pool).
"""

from __future__ import annotations

import http.client
import json
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from kiok.testing.process import Standalone

CLIENTS = ("lean", "httpx")


class _Get(Protocol):
    def __call__(self, path: str) -> dict[str, Any]: ...

    def close(self) -> None: ...


class _Lean:
    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        assert parts.scheme == "http" and parts.hostname and parts.port, url
        self._conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self._headers = {"Authorization": f"Bearer {token}"}

    def __call__(self, path: str) -> dict[str, Any]:
        self._conn.request("GET", path, headers=self._headers)
        answer = self._conn.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"GET {path}: {answer.status} {body[:200]!r}")
        data: dict[str, Any] = json.loads(body)
        return data

    def close(self) -> None:
        self._conn.close()


class _Httpx:
    def __init__(self, url: str, token: str) -> None:
        self._url = url
        self._http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def __call__(self, path: str) -> dict[str, Any]:
        answer = self._http.get(f"{self._url}{path}")
        answer.raise_for_status()
        data: dict[str, Any] = answer.json()
        return data

    def close(self) -> None:
        self._http.close()


class RunWatcher:
    """Watches runs of ``node`` with the ``client`` named (``lean`` or ``httpx``). The
    connection is opened here, before any run starts, as a client already watching has it
    (making an ``httpx.Client`` costs ~30 ms of CPU, its TLS context)."""

    def __init__(self, node: Standalone, client: str = "lean") -> None:
        assert client in CLIENTS, client
        self._get: _Get = (_Lean if client == "lean" else _Httpx)(node.url, node.token)
        self._get("/api/v1/me")
        self.held: dict[str, Any] | None = None

    def read(self, run_id: str, since: bool = True) -> dict[str, Any]:
        """Read ``run_id`` (by ``since`` when ``since`` and a copy of it is held) and return
        the copy, brought up to date."""
        held = self.held if self.held is not None and self.held["runId"] == run_id else None
        path = f"/api/v1/runs/{run_id}"
        if since and held is not None:
            path += f"?since={held['version']}"
        answer = self._get(path)
        if held is None or answer["full"]:
            self.held = answer
        else:
            self.held = {**held, **answer, "tasks": {**held["tasks"], **answer["tasks"]}}
        return self.held

    def close(self) -> None:
        self._get.close()
