"""The admin socket answers only kiok's own user and root, by the caller's peer credentials:
even when its file mode would let another user in (a task process runs as another user)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kiok.master.admin_socket import AdminSocket, may_administer, peer_uid

NOBODY = 65534


class FakeAuth:
    def __init__(self) -> None:
        self.resets: list[str] = []

    async def reset_password(self, user: str, new: str | None) -> str:
        self.resets.append(user)
        return "generated-password"


class FakeAudit:
    def __init__(self) -> None:
        self.records: list[tuple[str, ...]] = []

    def record(self, *fields: str) -> None:
        self.records.append(fields)


class FakeNode:
    def __init__(self) -> None:
        self.auth = FakeAuth()
        self.audit = FakeAudit()


@pytest.fixture
async def served() -> AsyncIterator[tuple[FakeNode, Path]]:
    """An admin socket whose file anyone may open (mode 0777 in an open directory)."""
    directory = Path(tempfile.mkdtemp(prefix="kiok-admin-sock-"))
    directory.chmod(0o755)
    node = FakeNode()
    server = AdminSocket(node, directory / "admin.sock")  # type: ignore[arg-type]
    await server.start()
    (directory / "admin.sock").chmod(0o777)
    try:
        yield node, directory / "admin.sock"
    finally:
        await server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _ask_as(uid: int, path: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Send ``request`` from a child process running as ``uid``; its answer."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only system calls, then _exit
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect(str(path))
                sock.sendall(json.dumps(request).encode() + b"\n")
                line = sock.makefile("rb").readline()
            os.write(write_end, line)
        except BaseException as e:
            os.write(write_end, json.dumps({"child": repr(e)}).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    answer: dict[str, Any] = json.loads(data)
    return answer


async def test_another_user_is_refused_and_nothing_is_reset(served: tuple[FakeNode, Path]) -> None:
    node, path = served
    request = {"op": "reset-password", "user": "admin"}
    answer = await asyncio.to_thread(_ask_as, NOBODY, path, request)
    assert answer == {"ok": False, "error": f"uid {NOBODY} may not use the admin socket"}
    assert node.auth.resets == [] and node.audit.records == []
    # kiok's own user (root here) still may, and the reset is audited.
    answer = await asyncio.to_thread(_ask_as, os.geteuid(), path, request)
    assert answer == {"ok": True, "user": "admin", "password": "generated-password"}
    assert node.auth.resets == ["admin"] and len(node.audit.records) == 1


def test_peer_credentials_name_the_connecting_user() -> None:
    a, b = socket.socketpair()
    with a, b:
        assert peer_uid(a) == os.geteuid()
    assert may_administer(0, 1000) and may_administer(1000, 1000)
    assert not may_administer(NOBODY, 1000) and not may_administer(NOBODY, 0)
