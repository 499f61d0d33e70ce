"""What a master does as the Raft role moves (several masters only).

On becoming leader: commit a ``LeaderElected`` first (once it is applied, so is everything
the previous leaders committed), bootstrap a new cluster (keyring, first administrator),
then run a fresh coordinator and scheduler for the term: the coordinator gives live drivers
the heartbeat timeout to reattach and reassigns the rest, and the scheduler's (DAG, fire
time) identity means a re-proposed cron interval creates nothing. On losing it: stop both
and drop the workers, who reconnect to the new leader.

Every master also announces its addresses (so the others can forward writes and redirect
workers to it) and, as a follower, asks the leader whether the cluster is open: the 503
gate counts every master and at least one worker on whichever master a client asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import TYPE_CHECKING, Any

import httpx

from kiok.errors import KiokError
from kiok.store import commands as c
from kiok.waits import wait_set

if TYPE_CHECKING:
    from kiok.master.node import MasterNode

log = logging.getLogger(__name__)

#: A follower whose log is this many entries behind the leader's commit is not ready.
_MAX_LAG = 1000
_POLL_S = 0.5


class Leadership:
    def __init__(self, node: MasterNode) -> None:
        self._node = node
        self._kick = asyncio.Event()
        self._leading_term: int | None = None
        self._leader_tasks: list[asyncio.Task[Any]] = []
        self._announced = False
        #: (open, why) as the leader last answered this follower.
        self._leader_view: tuple[bool, str] = (False, "no answer from the leader yet")
        #: The leader's ``/cluster/health`` as it last answered this follower (its workers).
        self.leader_health: dict[str, Any] = {}
        self._http: httpx.AsyncClient | None = None

    def kick(self) -> None:
        self._kick.set()

    def retake(self) -> None:
        """The state was replaced under the leader's loops (a replicated restore): if this
        master leads, it steps down and takes over again in the same term (fresh loops over
        the restored state, ``LeaderElected`` recorded in it, workers reconnect)."""
        if self.leading:
            log.info("master %s takes over again: a restore replaced the state", self._node.node_id)
            self._leading_term = None
            self._kick.set()

    @property
    def leading(self) -> bool:
        return self._leading_term is not None

    # --- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        ca = self._node.settings.get_str("kiok.tls.ca")
        self._http = httpx.AsyncClient(
            timeout=2.0, verify=ssl.create_default_context(cafile=ca) if ca else True
        )
        while True:
            await wait_set(self._kick, _POLL_S)
            self._kick.clear()
            try:
                await self._step()
            except KiokError as e:  # no leader right now, a write lost to a new leader...
                log.info("leadership step deferred: %s", e.message)
                await asyncio.sleep(0.2)
                self._kick.set()
            except Exception:  # a bug must not end this master's part in leadership for good
                log.exception("leadership step failed; trying again in 1 s")
                await asyncio.sleep(1.0)
                self._kick.set()

    async def _step(self) -> None:
        raft = self._node.raft
        assert raft is not None
        if raft.is_leader:
            if self._leading_term != raft.term:
                await self._demote()
                await self._promote(raft.term)
        elif self.leading:
            await self._demote()
        if self._node.keyring is not None and raft.leader_id is not None:
            await self._announce()
        if not raft.is_leader:
            await self._ask_leader()

    async def _promote(self, term: int) -> None:
        node = self._node
        await node.open_stores()  # a new cluster's first leader installs the keyring
        worker_term = await node.take_lead(term)
        await node.bootstrap()
        raft = node.raft
        assert raft is not None
        if not raft.is_leader or raft.term != term:
            return  # lost it while catching up
        self._leader_tasks = node.start_leading(worker_term)
        self._leading_term = term
        log.info("master %s leads (term %d; workers' term %d)", node.node_id, term, worker_term)

    async def _demote(self) -> None:
        if not self.leading and not self._leader_tasks:
            return
        log.info("master %s no longer leads (term %s)", self._node.node_id, self._leading_term)
        self._leading_term = None
        await _cancel(self._leader_tasks)
        self._leader_tasks = []
        self._node.demoted()

    async def _announce(self) -> None:
        node = self._node
        mine = {"adminUrl": node.admin_url, "internalAddress": node.internal_address}
        known = node.reader.masters().get(node.node_id)
        if known is not None and all(known.get(k) == v for k, v in mine.items()):
            return
        await node.log.propose(
            c.AnnounceMaster(
                at_ms=node.clock_ms(),
                master=node.node_id,
                admin_url=node.admin_url,
                internal_address=node.internal_address,
            )
        )

    async def _ask_leader(self) -> None:
        """The leader's ``/cluster/health``: whether it is open (and why not), and what this
        follower reports of the workers (they connect to the leader only)."""
        url = self.leader_admin_url()
        if url is None or self._http is None:
            self._leader_view = (False, "no leader is elected right now")
            self.leader_health = {}
            return
        try:
            r = await self._http.get(url + "/cluster/health")
            body = r.json()
            if not isinstance(body, dict):
                raise ValueError("not a JSON object")
            self._leader_view = (bool(body.get("ready")), str(body.get("reason", "")))
            self.leader_health = body
        except (httpx.HTTPError, ValueError) as e:
            self._leader_view = (False, f"the leader does not answer: {e}")
            self.leader_health = {}

    async def stop(self) -> None:
        await self._demote()
        if self._http is not None:
            await self._http.aclose()

    # --- views -----------------------------------------------------------------------------

    def _leader_record(self, field: str) -> str | None:
        """A field of the leader's announced addresses (None while no leader is known)."""
        raft = self._node.raft
        leader = None if raft is None else raft.leader_id
        if leader is None or self._node.keyring is None:
            return None  # no keyring yet: nothing is replicated here yet, addresses included
        info = self._node.reader.masters().get(leader)
        return None if info is None else str(info[field])

    def leader_admin_url(self) -> str | None:
        return self._leader_record("adminUrl")

    def leader_internal_address(self) -> str | None:
        return self._leader_record("internalAddress")

    def masters(self) -> list[dict[str, Any]]:
        """Every configured master as this master sees it (the leader sees the most)."""
        node = self._node
        raft = node.raft
        assert raft is not None
        status = raft.status()
        announced = node.reader.masters()
        commit = status.get("commitIndex") or 0
        out = []
        for mid in raft.config.peers:
            info = announced.get(mid, {})
            reachable = True
            if mid == node.node_id:
                ready = raft.caught_up and node.keyring is not None
            else:
                peer = status.get("peers", {}).get(mid, {})
                match = peer.get("matchIndex")
                reachable = bool(peer.get("connected"))
                ready = reachable and (
                    not raft.is_leader or (match is not None and commit - match <= _MAX_LAG)
                )
            out.append(
                {
                    "id": mid,
                    #: A master this one has no Raft connection to is "unreachable" (down, or
                    #: cut off), whatever it was before.
                    "role": "leader" if mid == raft.leader_id else "follower" if reachable else "unreachable",
                    "raftAddress": raft.config.peers[mid],
                    "address": info.get("adminUrl"),
                    "internalAddress": info.get("internalAddress"),
                    "ready": ready,
                }
            )
        return out

    def api_gate(self) -> tuple[bool, str]:
        ready, why = self._api_gate()
        problem = self._node.peer_watch.problem() if self._node.peer_watch is not None else ""
        if not ready and problem:
            why = f"{why}; {problem}"
        return ready, why

    def _api_gate(self) -> tuple[bool, str]:
        node = self._node
        raft = node.raft
        assert raft is not None
        opened = node.cluster_opened()
        if raft.leader_id is None:
            # Once open, a master with no leader (a minority left) that had caught up with
            # the last one still serves reads from its state; writes answer 503 not_leader.
            # One that restarted cut off never caught up: its state may be any age.
            if opened and raft.caught_up:
                return True, ""
            return False, "no leader is elected right now"
        if not raft.is_leader:
            if not raft.caught_up:
                return False, "this master is catching up with the leader"
            if opened:
                return True, ""
            open_, why = self._leader_view
            return open_, why or "the leader says the cluster is not ready"
        if not self.leading:
            return False, "the new leader is taking over"
        if opened:
            return True, ""
        behind = [m["id"] for m in self.masters() if not m["ready"]]
        if behind:
            return False, f"master(s) not ready: {', '.join(behind)}"
        return node.workers_ready()  # the first time it is, the cluster opens


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
