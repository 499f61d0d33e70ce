"""Each isolated attempt runs as a user of its own: the task spawner's side of it.

Why: tasks that share one user can read each other's working directories and ``/proc``
entries (the environment holds a task's resolved secrets), signal each other and stop the
spawner that watches them. So the worker hands each attempt one of its attempt users
(``kiok.worker.task.users``, ``<task user>-<n>``), none of them shared by two attempts
running at once, and the spawner starts the attempt as that user, in the task user's group.

The spawner itself runs as the task user, as before, but keeps root as its saved user id: a
process cannot start another as a different user, signal it or give it a directory without
it. It takes root only for the call that needs it (``acting_as``) and is back as the task
user when the call returns, so that a mistake elsewhere in it fails for want of permission
rather than doing something as root. Tasks cannot reach it: it is not dumpable, and no
task runs as its user.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator


class AttemptIds:
    """The spawner's user (``uid``), the group every task runs in (``gid``) and the attempt
    users it may start attempts as (``uids``); and the switching between them.

    A change of user costs ~2.5 µs here (a new set of credentials each time), so each
    switch takes as few as it can: into root one, from there to an attempt user one more,
    and back to the spawner's user one (unprivileged: it is the real user still), or two
    when the real user was changed too."""

    def __init__(self, uid: int, gid: int, uids: frozenset[int]) -> None:
        self.uid = uid
        self.gid = gid
        self.uids = uids
        self._acting = False

    @classmethod
    def parse(cls, text: str) -> AttemptIds:
        """``UID:GID:U1,U2,...`` (the spawner's argument); ``ValueError`` when malformed."""
        uid, gid, listed = text.split(":")
        uids = frozenset(int(u) for u in listed.split(",") if u)
        ids = cls(int(uid), int(gid), uids)
        if 0 in uids or ids.uid in uids or ids.uid <= 0 or ids.gid <= 0 or not uids:
            raise ValueError(f"attempt users {text!r}: root, or the spawner's own user, or none")
        return ids

    @contextlib.contextmanager
    def acting_as(self, euid: int, *, real: int | None = None) -> Iterator[None]:
        """Within: effective user ``euid`` (0: root; ``switch`` changes it), and real user
        ``real`` when given (the user a process started within runs as, ``resetids``). Back
        as the spawner's user after, whatever happened; a process that cannot get back ends.
        Not nested: an inner one's end would leave the outer one as the spawner's user."""
        if self._acting:
            raise RuntimeError("acting_as within acting_as")
        self._acting = True
        try:
            os.setresuid(-1, 0, -1)
            if real is not None:
                os.setresuid(real, -1, -1)
            if euid != 0:
                os.setresuid(-1, euid, -1)
            yield
        finally:
            self._acting = False
            try:
                if real is not None:
                    os.setresuid(-1, 0, -1)
                    os.setresuid(self.uid, self.uid, -1)
                else:
                    os.setresuid(-1, self.uid, -1)
            except OSError as e:
                raise SystemExit(f"kiok spawner: could not become its own user again: {e}") from None

    def switch(self, euid: int) -> None:
        """Within ``acting_as``: act as ``euid`` from now on (root is the saved user id, so
        it can always be taken back first)."""
        if not self._acting:
            raise RuntimeError("switch outside acting_as")
        os.setresuid(-1, 0, -1)
        if euid != 0:
            os.setresuid(-1, euid, -1)

    def check(self, uid: int | None) -> int:
        """The attempt user ``uid`` a start asks for; ``PermissionError`` if it is not one."""
        if uid is None or uid not in self.uids:
            raise PermissionError(errno.EPERM, f"uid {uid} is not one of this worker's attempt users")
        return uid


__all__ = ["AttemptIds"]
