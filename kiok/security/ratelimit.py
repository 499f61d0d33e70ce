"""Counting failed attempts per key (user and address, or address alone) over a sliding window.

An attempt whose outcome takes time to learn (a password hash) is counted as a failure
*before* it is checked and forgiven once it succeeds: otherwise a burst of concurrent
attempts would all pass the check before the first of them failed."""

from __future__ import annotations

from collections import deque


class FailureLimiter:
    def __init__(self, max_failures: int, window_ms: int) -> None:
        """``max_failures`` failures per key within ``window_ms`` are allowed before a wait;
        at least 1 (``ValueError``): with none allowed there is no failure to wait out, and
        every attempt would be refused, the first one included."""
        if max_failures < 1:
            raise ValueError(f"max_failures must be at least 1, not {max_failures}")
        self._max = max_failures
        self._window = window_ms
        self._failures: dict[str, deque[int]] = {}

    def retry_after_ms(self, key: str, now_ms: int) -> int:
        """0 when an attempt may go ahead, else how long to wait."""
        q = self._failures.get(key)
        if not q:
            return 0
        while q and q[0] <= now_ms - self._window:
            q.popleft()
        if not q:  # every failure aged out: nothing to wait for, nothing to keep
            del self._failures[key]
            return 0
        if len(q) < self._max:
            return 0
        return q[0] + self._window - now_ms

    def failed(self, key: str, now_ms: int) -> None:
        self._failures.setdefault(key, deque()).append(now_ms)
        if len(self._failures) > 100_000:  # bound memory under a spray of distinct keys
            self._failures.pop(next(iter(self._failures)))

    def forgive(self, key: str, at_ms: int) -> None:
        """Take back one failure recorded at ``at_ms`` (an attempt counted before its outcome
        was known that then succeeded); the key's other failures stay."""
        q = self._failures.get(key)
        if q is None:
            return
        try:
            q.remove(at_ms)
        except ValueError:
            return
        if not q:
            del self._failures[key]

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def succeeded_all(self, prefix: str) -> None:
        """Forget the failures of every key starting with ``prefix`` (e.g. one user's)."""
        for key in [k for k in self._failures if k.startswith(prefix + "\x00")]:
            del self._failures[key]
