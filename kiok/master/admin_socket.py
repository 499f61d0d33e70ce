"""The local admin socket (``kiok.admin.socket.path``, mode 0600): for the one operation
that must work when nobody can log in — resetting a password.

Only the operating-system user that runs the master (or root) can open the socket (mode
0600), and the caller's peer credentials (``SO_PEERCRED``) are checked too: a socket given a
laxer mode, or reached through a passed descriptor, still answers no one else (task
processes run as another user: ``kiok.worker.isolation``). One JSON request per connection,
one JSON answer:
``{"op": "reset-password", "user": "admin", "newPassword": "…"?, "restoreAdmin": true?}`` →
``{"ok": true, "user", "password"?}`` (the generated password, when none was given) or
``{"ok": false, "error"}``. The reset forces a change at next login and is audited without
the password. ``restoreAdmin`` first gives the user full access again, and no one else
(``MasterAuth.restore_admin``): the way back when every administrator lost their rights.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiok.errors import InvalidInput, KiokError
from kiok.security.passwords import password_problem
from kiok.waits import within

if TYPE_CHECKING:
    from kiok.master.node import MasterNode

log = logging.getLogger(__name__)

_MAX_REQUEST = 64 * 1024
_TIMEOUT_S = 10.0
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process that connected the other end of Unix socket ``sock``."""
    _, uid, _ = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return int(uid)


def may_administer(uid: int, own_uid: int) -> bool:
    """Whether the process of ``uid`` at the other end of the admin socket is trusted: kiok's
    own user or root. The master asks it of its caller, ``kiok admin`` of the master before
    it sends a password."""
    return uid in (own_uid, 0)


def admin_socket_problem(path: Path, *, listened_ok: bool = False) -> str | None:
    """Why a master cannot make its admin socket at ``path``, or None: something that is not
    a socket is there (a file, the master key, a directory: removing it to make the socket
    destroyed it, found by the operability re-probe of session 28), or (unless
    ``listened_ok``) a socket another process listens on."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot look at {str(path)!r}: {e.strerror}"
    if not stat.S_ISSOCK(st.st_mode):
        return f"{str(path)!r} exists and is not a socket: kiok removes nothing there"
    if not listened_ok and not stale_socket(path):
        return f"another process listens at {str(path)!r}"
    return None


def stale_socket(path: Path) -> bool:
    """Whether ``path`` is a unix socket nothing listens on (a crashed master's)."""
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return False
    except OSError:
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1)
        probe.connect(str(path))
    except ConnectionRefusedError:
        return True
    except OSError:
        return False  # not ours to judge (no permission, ...): left as it is
    finally:
        probe.close()
    return False


class AdminSocket:
    def __init__(self, node: MasterNode, path: Path) -> None:
        self._node = node
        self.path = path
        self._server: asyncio.Server | None = None
        #: (device, inode) of the socket this master made: the one it removes at its stop.
        self._made: tuple[int, int] | None = None

    async def start(self) -> None:
        path = str(self.path)
        problem = admin_socket_problem(self.path)  # checked at preflight too; things change
        if problem is not None:
            raise InvalidInput(f"kiok.admin.socket.path: {problem}")
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # what is there is a crashed master's socket: nothing answers on it
        old_umask = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(self._handle, path=path, limit=_MAX_REQUEST)
        except OSError as e:  # what preflight cannot know (a directory kiok may not write)
            raise InvalidInput(
                f"kiok.admin.socket.path: cannot listen at {path!r}: {e.strerror or e}"
            ) from None
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        st = os.lstat(self.path)
        self._made = (st.st_dev, st.st_ino)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # Only the socket this master made: another process may have taken the path since.
        with contextlib.suppress(OSError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._made:
                self.path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        uid = peer_uid(writer.get_extra_info("socket"))
        allowed = may_administer(uid, os.geteuid())
        if not allowed:
            log.warning("admin socket: refused a caller running as uid %d (not kiok's user or root)", uid)
        answer: dict[str, Any] = {"ok": False, "error": f"uid {uid} may not use the admin socket"}
        try:
            # Read even to refuse: the caller then gets the refusal, not a broken pipe.
            line = await within(reader.readline(), _TIMEOUT_S)
            if allowed:
                answer = await self._answer(line)
        except (TimeoutError, ValueError, asyncio.LimitOverrunError):
            if allowed:
                answer = {"ok": False, "error": "send one JSON request on one line"}
        writer.write(json.dumps(answer).encode() + b"\n")
        with contextlib.suppress(ConnectionError, TimeoutError):
            await within(writer.drain(), _TIMEOUT_S)
        writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        request = json.loads(line)
        if not isinstance(request, dict) or request.get("op") != "reset-password":
            return {"ok": False, "error": "unknown operation (supported: reset-password)"}
        user, new = request.get("user"), request.get("newPassword")
        restore = request.get("restoreAdmin", False)
        if not isinstance(user, str) or (new is not None and not isinstance(new, str)):
            return {"ok": False, "error": "'user' must be a string, and 'newPassword' a string when given"}
        if not isinstance(restore, bool):
            return {"ok": False, "error": "'restoreAdmin' must be true or false"}
        problem = None if new is None else password_problem(new, user=user)
        if problem:  # before anything changes: a refused reset restores no rights either
            return {"ok": False, "error": problem}
        try:
            denying: list[str] = []
            if restore:
                policy = await self._node.auth.restore_admin(user)
                detail = f"policy {policy}"
                self._node.audit.record(
                    "local admin socket", "auth:RestoreAdmin", user, "unix socket", detail=detail
                )
                log.warning("%r given full access (policy %r) through the admin socket", user, policy)
                denying = self._node.auth.denying(user)
            password = await self._node.auth.reset_password(user, new)
        except KiokError as e:
            return {"ok": False, "error": e.message}
        self._node.audit.record("local admin socket", "auth:ResetPassword", user, "unix socket")
        log.warning("password of %r reset through the admin socket; it must be changed at next login", user)
        answer: dict[str, Any] = {"ok": True, "user": user}
        if denying:  # a Deny wins over full access: the operator must know what still limits
            answer["denying"] = denying
        if new is None:
            answer["password"] = password
        return answer
