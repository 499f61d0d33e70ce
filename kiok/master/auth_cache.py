"""What a credential resolves to (its principal) and what a principal may do (its policy
documents), kept between requests: a client polling a run every 50 ms otherwise pays four
IAM reads from the store per request for an answer that almost never changes.

Correctness rests on one counter, ``IamEpoch``: the master bumps it whenever a change that
could alter any answer is applied to its store (``Effects.iam_changed``, a restore, a Raft
snapshot install), on whichever master the change was made, so every master's caches follow
their own store. An answer is kept only if the epoch did not move while it was worked out
(so one computed from the store just before a change is never kept after it), and every
answer kept under an older epoch is dropped at the next lookup."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from kiok.store.effects import Effects

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: Entries one cache keeps (least recently used dropped first): a credential per client.
CAPACITY = 1024


class IamEpoch:
    """Moves on every IAM change applied to this master's store. Bumped from the Raft apply
    thread as well as the event loop: ``next()`` of a counter is atomic under the GIL."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self.value = 0

    def bump(self) -> None:
        self.value = next(self._counter)

    def on_effects(self, fx: Effects) -> None:
        """Bump if an applied batch changed IAM records or replaced the whole state."""
        if fx.iam_changed or fx.restored is not None:
            self.bump()


class EpochCache(Generic[K, V]):
    """Answers by key, valid for one ``IamEpoch`` value. Used from the event loop only (the
    epoch is the one thing another thread touches)."""

    def __init__(self, epoch: IamEpoch, capacity: int = CAPACITY) -> None:
        self._epoch = epoch
        self._capacity = capacity
        self._seen = epoch.value
        self._entries: OrderedDict[K, V] = OrderedDict()

    def resolve(self, key: K, compute: Callable[[], V]) -> V:
        """The answer for ``key``: kept, or ``compute()`` (what it raises is not kept)."""
        epoch = self._epoch.value
        if epoch != self._seen:
            self._entries.clear()
            self._seen = epoch
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            return found
        value = compute()
        if self._epoch.value == epoch:
            self._entries[key] = value
            if len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)
