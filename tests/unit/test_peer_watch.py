"""``PeerWatch`` names a master whose Raft port answers but which never joins (another
``KIOK_MASTER_KEY``), and does not mistake a master that is restarting for one."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace
from typing import Any, cast

from kiok.master.peer_watch import PeerWatch
from kiok.store.replicated import RaftCommandLog


class FakeRaft:
    def __init__(self, address: str) -> None:
        self.connected = False
        self.config = SimpleNamespace(peers={"m2": address})

    def status(self) -> dict[str, Any]:
        return {"peers": {"m2": {"connected": self.connected}}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_restarting_master_gets_the_grace_from_when_its_port_answers() -> None:
    port = _free_port()
    raft = FakeRaft(f"127.0.0.1:{port}")
    now = [0.0]
    watch = PeerWatch(cast(RaftCommandLog, raft), grace_s=10.0, clock=lambda: now[0])
    await watch.check()  # m2 is down (killed): nothing answers
    now[0] = 30.0  # it was down for 30 s, and now starts again: its port answers first
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    try:
        await watch.check()
        assert watch.suspects == {}  # restarting, not a wrong key (30 s down said nothing)
        now[0] = 39.0
        await watch.check()
        assert watch.suspects == {}
        now[0] = 41.0  # answering for over 10 s and still not joined: named
        await watch.check()
        assert "same KIOK_MASTER_KEY" in watch.problem()
        raft.connected = True  # it joined after all
        await watch.check()
        assert watch.problem() == ""
    finally:
        server.close()
        await server.wait_closed()


async def test_a_master_that_goes_down_again_is_simply_down() -> None:
    port = _free_port()
    raft = FakeRaft(f"127.0.0.1:{port}")
    now = [0.0]
    watch = PeerWatch(cast(RaftCommandLog, raft), grace_s=10.0, clock=lambda: now[0])
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    await watch.check()
    server.close()
    await server.wait_closed()
    now[0] = 20.0
    await watch.check()  # its port stopped answering: down, not suspect
    assert watch.suspects == {}


async def test_a_peer_that_had_joined_and_hangs_is_not_blamed_on_the_key(caplog: Any) -> None:
    """Found by the failover probe: a master stopped (SIGSTOP) for over 10 s was logged as an
    ERROR "does not authenticate: every master needs the same KIOK_MASTER_KEY" — its kernel
    still completes TCP handshakes. One that had joined is said to be hung, as a warning."""
    port = _free_port()
    raft = FakeRaft(f"127.0.0.1:{port}")
    now = [0.0]
    watch = PeerWatch(cast(RaftCommandLog, raft), grace_s=10.0, clock=lambda: now[0])
    raft.connected = True
    await watch.check()  # it had joined
    raft.connected = False  # then it stopped answering, its port still taking connections
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    try:
        with caplog.at_level("WARNING", logger="kiok.master.peer_watch"):
            await watch.check()
            now[0] = 11.0
            await watch.check()
        assert "hung or stopped" in watch.problem() and "KIOK_MASTER_KEY" in watch.problem()
        assert [r.levelname for r in caplog.records if r.name == "kiok.master.peer_watch"] == ["WARNING"]
    finally:
        server.close()
        await server.wait_closed()
