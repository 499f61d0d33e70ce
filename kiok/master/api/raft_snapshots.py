"""Store snapshots between masters: ``GET /raft/snapshots/{digest}`` serves a file from this
master's shelf, and ``HttpSnapshotFetch`` is how a master that is behind downloads one.

Only masters may fetch: the request carries the master-to-master service token (the one
forwarded writes carry, ``X-Kiok-Service-Authorization``). The route is outside ``/api/v1``,
so neither the readiness gate (a cluster with a master down is not ready, and that master
is the one fetching) nor forwarding applies; any master that still has the file serves it,
leader or not. The file holds what the stores hold, and no secret in plaintext: values
encrypted under the data keys, the keyring wrapped by the root key, plain counters (the
token signing key is sealed too: ``SealSigningKey`` retired the plaintext one older stores had).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from kiok.errors import NotFound, Unauthenticated
from kiok.master.api.deps import node_of
from kiok.master.api.forward import SERVICE_AUTH
from kiok.store import snapshot_ref

router = APIRouter(tags=["cluster"], include_in_schema=False)

PATH = "/raft/snapshots/"
_CHUNK = 1 << 20


@router.get(PATH + "{digest}")
async def snapshot_file(request: Request, digest: str) -> FileResponse:
    """The snapshot file named ``digest`` (401 without the service token, 404 once pruned)."""
    node = node_of(request)
    scheme, _, token = request.headers.get(SERVICE_AUTH, "").partition(" ")
    if scheme.lower() != "bearer" or not node.accepts_service_token(token.strip()):
        raise Unauthenticated("snapshots are for masters: a service token is required")
    path = None if node.raft is None else node.raft.shelf.path(digest)
    if path is None:
        raise NotFound(f"no snapshot {digest[:12]} here (pruned, or never written here)")
    return FileResponse(path, media_type="application/octet-stream")


class HttpSnapshotFetch:
    """``snapshot_ref.Fetch`` over HTTP(S): streams the file in 1 MiB chunks into the shelf's
    scratch file through ``snapshot_ref.receive`` (size and digest checked)."""

    def __init__(self, token: Callable[[], str], ca: str | None, timeout_s: float = 30.0) -> None:
        self._token = token
        self._verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if ca else True
        #: Per read: a stalled transfer fails, a long one does not.
        self._timeout = httpx.Timeout(timeout_s)

    def __call__(self, ref: snapshot_ref.SnapshotRef, dest: Path) -> None:
        headers = {SERVICE_AUTH: f"Bearer {self._token()}"}
        url = ref.url.rstrip("/") + PATH + ref.digest
        with (
            httpx.Client(verify=self._verify, timeout=self._timeout) as client,
            client.stream("GET", url, headers=headers) as answer,
        ):
            if answer.status_code != 200:
                raise ValueError(f"{answer.status_code} from the master that wrote it")
            snapshot_ref.receive(answer.iter_bytes(_CHUNK), ref, dest)
