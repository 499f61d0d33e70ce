"""The command log: the only door to state changes. Callers ``propose`` a command and get
``apply()``'s result once the command is durable.

``LocalCommandLog`` is the standalone implementation: proposals arriving in the same event
loop turn are applied together into one RocksDB write batch, fsync'd once (group commit),
and only then answered — so a burst of task reports costs one fsync, and an acknowledged
write survives kill -9. A later replicated implementation keeps this interface and
``apply()`` unchanged, committing through Raft first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from kiok.errors import InvalidInput, KiokError, StoreUnavailable
from kiok.store.apply import Effects, apply
from kiok.store.commands import Command
from kiok.store.kv import KVStore, Write
from kiok.store.txn import Txn

log = logging.getLogger(__name__)

Listener = Callable[[Effects], None]
T = TypeVar("T")


class CommandLog(Protocol):
    async def propose(self, cmd: Command) -> Any:
        """Apply ``cmd`` durably and return its result; raise the ``KiokError`` that
        ``apply()`` raised (nothing of the command is then written). Commands proposed
        concurrently are applied in the order their ``propose`` calls started."""
        ...

    def propose_nowait(self, cmd: Command, *, fsync: bool = True) -> asyncio.Future[Any]:
        """``propose`` for callers that must not await; the future resolves as ``propose``
        would. With ``fsync=False`` the command need only survive a crash of this process
        (for reports nobody waits on)."""
        ...

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with the effects of every durable batch, in commit order."""
        ...


class TurnBatcher(Generic[T]):
    """Collects what is added during one event-loop turn and hands it to ``flush`` together:
    group commit. One call takes items up to a total ``weigh`` of ``max_weight`` (at least
    one item); the rest go in the next turn, after the loop has looked at its sockets, so a
    burst of large reports does not hold up the starting of tasks for its whole length."""

    def __init__(
        self, flush: Callable[[list[T]], None], max_weight: int, weigh: Callable[[T], int] | None = None
    ) -> None:
        self._flush = flush
        self._max_weight = max_weight
        self._weigh = weigh
        self._pending: list[T] = []
        self._scheduled = False

    def add(self, item: T) -> None:
        self._pending.append(item)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        take = self._take()
        batch, self._pending = self._pending[:take], self._pending[take:]
        if self._pending:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._run)
        self._flush(batch)

    def _take(self) -> int:
        """How many of the pending items the next call takes."""
        if self._weigh is None:
            return self._max_weight
        total = 0
        for n, item in enumerate(self._pending):
            total += self._weigh(item)
            if total > self._max_weight:
                return max(n, 1)
        return len(self._pending)


class LocalCommandLog:
    def __init__(self, kv: KVStore, *, max_weight: int = 128) -> None:
        """``max_weight``: how much one write batch applies at most, in ``Command.weight``
        (about 2 ms of applying here)."""
        self._kv = kv
        self._batcher: TurnBatcher[tuple[Command, asyncio.Future[Any], bool]] = TurnBatcher(
            self._commit, max_weight, lambda item: item[0].weight
        )
        self._listeners: list[Listener] = []
        self.batches = 0
        self.commands = 0

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def propose(self, cmd: Command) -> Any:
        return await self.propose_nowait(cmd)

    def propose_nowait(self, cmd: Command, *, fsync: bool = True) -> asyncio.Future[Any]:
        """Like ``propose`` for callers that must not await. With ``fsync=False`` the
        command's batch is written to RocksDB's log without an fsync unless another command
        in it needs one or it ends a run: it survives kill -9 of the process, not a power
        loss. Only reports that nobody is waiting on (in-process task reports) use that."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._batcher.add((cmd, fut, fsync))
        return fut

    def _commit(self, batch: list[tuple[Command, asyncio.Future[Any], bool]]) -> None:
        applied = apply_batch(self._kv, [cmd for cmd, _, _ in batch])
        try:
            # A batch that ends a run is fsync'd too, whoever proposed it: once the API says
            # a run ended, even a power loss does not bring it back to RUNNING.
            sync = bool(applied.effects.runs_finished) or any(fsync for _, _, fsync in batch)
            self._kv.write(applied.writes, sync=sync)
        except StoreUnavailable as e:  # the store said so once (``RocksKV.on_unavailable``)
            _fail(batch, e)
            return
        except Exception as e:
            log.exception("state store write failed")
            _fail(batch, e)
            return
        self.batches += 1
        self.commands += len(batch)
        for (_, fut, _), outcome in zip(batch, applied.outcomes, strict=True):
            settle(fut, outcome)
        notify(self._listeners, applied.effects)


def _fail(batch: list[tuple[Command, asyncio.Future[Any], bool]], e: Exception) -> None:
    for _, fut, _ in batch:
        if not fut.done():
            fut.set_exception(e)


@dataclass
class AppliedBatch:
    """What ``apply_batch`` made of a batch: the store writes (one atomic batch), the merged
    effects, and per command its result or the error that refused it."""

    writes: list[Write]
    effects: Effects
    outcomes: list[tuple[Any, BaseException | None]] = field(default_factory=list)


def apply_batch(kv: KVStore, commands: list[Command]) -> AppliedBatch:
    """Apply ``commands`` in order over ``kv`` without writing it. A refused command leaves
    nothing behind and does not stop the others (each runs in a child transaction)."""
    try:
        return _apply_batch(kv, commands, check_encoding=False)
    except _UNENCODABLE:
        # A value the store cannot encode (an integer past 64 bits that slipped through):
        # again, checking each command's own writes, so it alone is refused.
        return _apply_batch(kv, commands, check_encoding=True)


#: What encoding a stored value raises for a value msgpack cannot represent.
_UNENCODABLE = (TypeError, ValueError, OverflowError)


def _apply_batch(kv: KVStore, commands: list[Command], *, check_encoding: bool) -> AppliedBatch:
    txn = Txn(kv)
    fx = Effects()
    outcomes: list[tuple[Any, BaseException | None]] = []
    for cmd in commands:
        child, child_fx = txn.child(), Effects()
        try:
            result = apply(child, cmd, child_fx)
            if check_encoding:
                try:
                    child.writes()
                except _UNENCODABLE as e:
                    raise InvalidInput(f"a value in this request cannot be stored: {e}") from None
        except KiokError as e:
            outcomes.append((None, e))
            continue
        except Exception as e:  # a bug in apply(): refuse the command, keep the batch
            log.exception("apply() failed on %s", cmd.kind)
            outcomes.append((None, e))
            continue
        child.merge_into_parent()
        fx.merge(child_fx)
        outcomes.append((result, None))
    return AppliedBatch(list(txn.writes()), fx, outcomes)


def settle(fut: asyncio.Future[Any], outcome: tuple[Any, BaseException | None]) -> None:
    if fut.done():
        return
    result, err = outcome
    if err is not None:
        fut.set_exception(err)
    else:
        fut.set_result(result)


def notify(listeners: list[Listener], fx: Effects) -> None:
    for listener in listeners:
        try:
            listener(fx)
        except Exception:
            log.exception("command log listener failed")
