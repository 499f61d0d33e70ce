"""Telling a master with the wrong key apart from a master that is down.

Raft traffic between masters is authenticated with a key derived from ``KIOK_MASTER_KEY``;
PySyncObj drops a connection it cannot authenticate without a word. So a master started
with another key (or any other program on a peer's Raft port) would look exactly like a
peer that is down. This watch notices the difference: a peer whose Raft port accepts TCP
connections but that has not joined for ``grace_s`` is named, with the likely cause, in the
log (once per episode) and in this master's readiness reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from kiok.store.replicated import RaftCommandLog

log = logging.getLogger(__name__)


class PeerWatch:
    def __init__(self, raft: RaftCommandLog, *, grace_s: float = 5.0, interval_s: float = 2.0) -> None:
        self._raft = raft
        self._grace_s = grace_s
        self._interval_s = interval_s
        self._down_since: dict[str, float] = {}
        #: master id -> why it is suspected of not sharing this master's key
        self.suspects: dict[str, str] = {}

    def problem(self) -> str:
        """A sentence for the readiness reason; empty when nothing is suspected."""
        if not self.suspects:
            return ""
        return "; ".join(self.suspects[mid] for mid in sorted(self.suspects))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.check()

    async def check(self) -> None:
        now = time.monotonic()
        peers = self._raft.status().get("peers", {})
        for mid, state in peers.items():
            if state.get("connected"):
                self._down_since.pop(mid, None)
                if self.suspects.pop(mid, None) is not None:
                    log.info("master %s joined: Raft authentication works now", mid)
                continue
            since = self._down_since.setdefault(mid, now)
            if now - since < self._grace_s:
                continue
            address = self._raft.config.peers[mid]
            if not await _answers(address):
                self.suspects.pop(mid, None)  # simply down
            elif mid not in self.suspects:
                self.suspects[mid] = (
                    f"master {mid} ({address}) accepts connections on its Raft port but does not "
                    "authenticate: every master needs the same KIOK_MASTER_KEY (or another program "
                    "holds that port)"
                )
                log.error("%s", self.suspects[mid])


async def _answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
