"""Service-to-service bearer tokens (master-to-master forwarding, tooling), with rotation:
an accepted-token list from ``kiok.internal.auth.tokens`` (comma or newline separated) plus a
token file re-read every ``kiok.internal.auth.reload.interval.seconds`` without a restart, so
a new token can be added before the old one is removed. Compared in constant time."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def parse_tokens(text: str) -> tuple[str, ...]:
    """In the order given: the first is the one this process sends."""
    return tuple(dict.fromkeys(t.strip() for t in text.replace(",", "\n").splitlines() if t.strip()))


class ServiceTokens:
    def __init__(self, configured: str, file: str) -> None:
        self._configured = parse_tokens(configured)
        self._file = Path(file) if file else None
        self._from_file: tuple[str, ...] = ()
        self.reload()

    def reload(self) -> None:
        """Re-read the token file (a missing or unreadable file keeps the previous tokens)."""
        if self._file is None:
            return
        try:
            tokens = parse_tokens(self._file.read_text())
        except OSError as e:
            log.warning("cannot read service token file %s: %s", self._file, e)
            return
        if tokens != self._from_file:
            log.info("service token file reloaded: %d token(s)", len(tokens))
        self._from_file = tokens

    def accepts(self, token: str) -> bool:
        found = False
        for accepted in (*self._configured, *self._from_file):
            found |= hmac.compare_digest(accepted.encode(), token.encode())
        return found

    def current(self) -> str | None:
        """The token this process presents to others: the token file's first, else the
        configured list's first. Rotate by adding the new token everywhere first (as a
        second line), then moving it to the top, then removing the old one."""
        for tokens in (self._from_file, self._configured):
            if tokens:
                return tokens[0]
        return None
