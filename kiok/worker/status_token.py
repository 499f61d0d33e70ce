"""The worker's status token: what ``POST /drain`` and ``/undrain`` on the status port take,
as ``Authorization: Bearer <token>``.

Tasks share the host's network, so they reach the status port like anyone on it; they do
not reach kiok's data directory (mode 0700, kiok's user; tasks run as another user, see
``kiok.worker.isolation``). So the worker writes a new random token there at each start,
in ``<data>/status-token`` (mode 0600), and an operator on the worker's host, as kiok's
user, reads it (``kiok workers drain`` does). With isolation ``none`` tasks run as kiok's
user and can read it too."""

from __future__ import annotations

import hmac
from pathlib import Path

#: The token's file in the worker's data directory.
STATUS_TOKEN_FILE = "status-token"


def status_token_path(data_dir: Path) -> Path:
    """Where the worker whose data directory is ``data_dir`` keeps its status token."""
    return data_dir / STATUS_TOKEN_FILE


def read_status_token(path: Path) -> str:
    """The token saved at ``path``. Raises ``OSError`` (missing, unreadable) or ``ValueError``
    (empty)."""
    token = path.read_text().strip()
    if not token:
        raise ValueError(f"{path} is empty")
    return token


def bearer_refusal(authorization: str | None, token: str) -> str | None:
    """Why an ``Authorization`` header does not carry ``token`` as a bearer token, or None.
    The comparison takes the same time wherever the first difference is."""
    scheme, _, given = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return (
            "no status token: send the token in the worker's <data>/status-token "
            "as Authorization: Bearer <token>"
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return "wrong status token (the worker writes a new one at each start)"
    return None
