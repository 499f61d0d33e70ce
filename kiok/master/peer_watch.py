"""Telling a master with the wrong key apart from a master that is down.

Raft traffic between masters is authenticated with a key derived from ``KIOK_MASTER_KEY``;
PySyncObj drops a connection it cannot authenticate without a word. So a master started
with another key (or any other program on a peer's Raft port) would look exactly like a
peer that is down. This watch notices the difference: a peer whose Raft port has accepted TCP
connections for ``grace_s`` without the peer joining is named, with the likely cause, in the
log (once per episode) and in this master's readiness reason. The grace counts from when the
port started answering, not from when the peer went away: a master restarting after a crash
binds its port before it has opened its stores and joined, which is not a wrong key.

A peer that had joined before and stops answering while its port still takes connections is
most likely hung (a stopped process's kernel still completes the handshake): said as such,
a warning naming both causes, not an error blaming the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from kiok.store.replicated import RaftCommandLog
from kiok.waits import within

log = logging.getLogger(__name__)


class PeerWatch:
    def __init__(
        self,
        raft: RaftCommandLog,
        *,
        grace_s: float = 10.0,
        interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._raft = raft
        self._grace_s = grace_s
        self._interval_s = interval_s
        self._clock = clock
        #: master id -> since when its Raft port answers while it has not joined
        self._answering_since: dict[str, float] = {}
        #: master id -> why it is suspected of not sharing this master's key
        self.suspects: dict[str, str] = {}
        #: Masters that have joined since this one started (their key is right).
        self._joined: set[str] = set()

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
        peers = self._raft.status().get("peers", {})
        for mid, state in peers.items():
            if state.get("connected"):
                self._joined.add(mid)
                self._answering_since.pop(mid, None)
                if self.suspects.pop(mid, None) is not None:
                    log.info("master %s joined: Raft authentication works now", mid)
                continue
            address = self._raft.config.peers[mid]
            if not await _answers(address):
                self._answering_since.pop(mid, None)
                self.suspects.pop(mid, None)  # simply down
                continue
            since = self._answering_since.setdefault(mid, self._clock())
            if self._clock() - since < self._grace_s:
                continue  # starting up, catching up: not yet a suspect
            if mid in self.suspects:
                continue
            if mid in self._joined:
                self.suspects[mid] = (
                    f"master {mid} ({address}) accepts connections on its Raft port but no longer "
                    "answers: it is hung or stopped (or was restarted with another KIOK_MASTER_KEY)"
                )
                log.warning("%s", self.suspects[mid])
            else:
                self.suspects[mid] = (
                    f"master {mid} ({address}) accepts connections on its Raft port but does not "
                    "authenticate: every master needs the same KIOK_MASTER_KEY (or another program "
                    "holds that port)"
                )
                log.error("%s", self.suspects[mid])


async def _answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        _, writer = await within(asyncio.open_connection(host, int(port)), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
