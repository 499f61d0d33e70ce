"""Password hashing with argon2id (argon2-cffi's defaults: 64 MiB, 3 passes), and the pool
that runs it off the event loop.

One hash costs ~0.1 s of CPU and 64 MiB: run on the event loop, a burst of wrong logins
would stall every other request, and run without a bound it would exhaust memory. The
``HashPool`` runs hashes in threads (argon2 releases the GIL), at most ``concurrency`` at
once; the rest wait their turn without holding a thread."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()

MIN_PASSWORD_LENGTH = 8


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def password_problem(new: str, *, user: str, old: str | None = None) -> str | None:
    """Why ``new`` is not acceptable, or None."""
    if len(new) < MIN_PASSWORD_LENGTH:
        return f"the new password must have at least {MIN_PASSWORD_LENGTH} characters"
    if new == old:
        return "the new password must differ from the old one"
    if new.lower() in {"admin", "password", user.lower()}:
        return "the new password is too easy to guess"
    return None


def cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class HashPool:
    """``hash_password``/``verify_password`` off the event loop, at most ``concurrency`` at
    a time (0: one per CPU). Callers queue in arrival order; a caller cancelled while
    waiting costs nothing. Safe to share between tasks of one event loop."""

    def __init__(self, concurrency: int = 0) -> None:
        self.concurrency = concurrency if concurrency > 0 else cpu_count()
        self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="kiok-hash")
        self._slots = asyncio.Semaphore(self.concurrency)

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.get_running_loop().run_in_executor(self._executor, hash_password, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        async with self._slots:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, verify_password, password_hash, password
            )

    def close(self) -> None:
        """Stop the threads once the queued hashes are done (idempotent)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
