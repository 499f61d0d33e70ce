"""Password hashing with argon2id (argon2-cffi's defaults: 64 MiB, 3 passes), and the pool
that runs it off the event loop.

One hash costs ~0.1 s of CPU and 64 MiB: run on the event loop, a burst of wrong logins
would stall every other request, and run without a bound it would exhaust memory. The
``HashPool`` runs hashes in threads (argon2 releases the GIL), at most ``concurrency`` at
once; at most ``queue_max`` more wait their turn, without holding a thread, and past that a
caller is refused at once (``Overloaded``): a flood of logins from many addresses and user
names, which no back-off stops, must not make every later login wait minutes behind it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from kiok.errors import Overloaded

_HASHER = PasswordHasher()
_T = TypeVar("_T")

MIN_PASSWORD_LENGTH = 8
#: The longest password the API takes (its request fields' limit).
MAX_PASSWORD_LENGTH = 4096


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError, UnicodeEncodeError):  # a lone surrogate: no one's
        return False


def password_problem(new: str, *, user: str, old: str | None = None) -> str | None:
    """Why ``new`` is not acceptable, or None."""
    if len(new) < MIN_PASSWORD_LENGTH:
        return f"the new password must have at least {MIN_PASSWORD_LENGTH} characters"
    if len(new) > MAX_PASSWORD_LENGTH:  # what the API's fields take: no login could send more
        return f"the new password must have at most {MAX_PASSWORD_LENGTH} characters"
    if not _is_text(new):  # a lone surrogate (JSON's "\ud800", an undecodable environment byte)
        return "the new password must be text"
    if not new.strip():
        return "the new password must not be only spaces"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in new):  # NUL, newlines...: typed by no one
        return "the new password must not hold control characters"
    if new == old:
        return "the new password must differ from the old one"
    if new.lower() in {"admin", "password", user.lower()}:
        return "the new password is too easy to guess"
    return None


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class HashPool:
    """``hash_password``/``verify_password`` off the event loop, at most ``concurrency`` at
    a time (0: one per CPU). Callers wait in arrival order, at most ``queue_max`` of them;
    one more raises ``Overloaded`` at once, unless it passes ``shed=False`` (callers an
    attacker cannot multiply: the first bootstrap, the local admin socket). A caller
    cancelled while waiting costs nothing and frees its place; one cancelled while hashing
    keeps its slot until its thread is done (the hash cannot be stopped). Safe to share
    between tasks of one event loop."""

    def __init__(self, concurrency: int = 0, queue_max: int = 64) -> None:
        self.concurrency = concurrency if concurrency > 0 else cpu_count()
        self.queue_max = max(0, queue_max)
        self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="kiok-hash")
        self._slots = asyncio.Semaphore(self.concurrency)
        self._waiting = 0

    async def hash(self, password: str, *, shed: bool = True) -> str:
        return await self._run(shed, hash_password, password)

    async def verify(self, password_hash: str, password: str, *, shed: bool = True) -> bool:
        return await self._run(shed, verify_password, password_hash, password)

    async def _run(self, shed: bool, fn: Callable[..., _T], *args: str) -> _T:
        if shed and self._slots.locked() and self._waiting >= self.queue_max:
            raise Overloaded(
                f"too many password checks are waiting (kiok.auth.password.hash.queue.max: "
                f"{self.queue_max}); try again in a moment"
            )
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            done = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except BaseException:
            self._slots.release()
            raise
        done.add_done_callback(self._finished)
        # Shielded: a cancelled caller leaves the hash to finish, and its slot with it.
        return await asyncio.shield(done)

    def _finished(self, done: asyncio.Future[Any]) -> None:
        self._slots.release()
        if not done.cancelled():
            done.exception()  # retrieved: a cancelled caller's failure is not logged as lost

    def close(self) -> None:
        """Stop the threads once the queued hashes are done (idempotent)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
