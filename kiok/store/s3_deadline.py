"""A whole-request deadline for botocore calls (``kiok.s3.request.timeout.ms``).

botocore's timeouts are per connect and per socket read: a server that trickles bytes, or
answers a little before each read times out, holds a call (and the thread making it) for as
long as it likes. Here each call made through ``run_within`` gets a timer; when it fires, the
sockets that call's thread holds are shut down, which wakes a read or write blocked on them,
and the connection pools hand that call no other connection (no retry after the deadline).
The pools learn which thread holds which connection by being botocore's own pool classes
with two methods wrapped (``install``), set on the client's HTTP session.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


class _ThreadConns:
    """Per thread: the HTTP connections it holds (checked out of a pool: a request in flight,
    or a response body not read yet) and the S3 call it is making, if any."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conns: weakref.WeakSet[Any] = weakref.WeakSet()
        self.call: _Call | None = None


class _Call:
    """One S3 call's deadline. When it passes, ``expire`` shuts down the sockets its thread
    holds, which wakes a read or write blocked on a server that trickles bytes or never
    answers; later connection requests of the call are refused (no retry after it)."""

    def __init__(self, owner: _ThreadConns) -> None:
        self.owner = owner
        self.expired = False

    def expire(self) -> None:
        with self.owner.lock:
            if self.owner.call is not self:  # the call ended meanwhile
                return
            self.expired = True
            conns = list(self.owner.conns)
        for conn in conns:
            sock = getattr(conn, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    # socket.socket's own shutdown, also for an SSLSocket (whose override
                    # would drop its SSL object under the thread reading it).
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


class DeadlineExpired(Exception):
    """Raised by a pool asked for a connection after its call's deadline."""


_threads = threading.local()


def _thread_conns() -> _ThreadConns:
    state: _ThreadConns | None = getattr(_threads, "state", None)
    if state is None:
        state = _threads.state = _ThreadConns()
    return state


def _deadline_pool(base: Any) -> type:
    """A subclass of a botocore connection pool that records, per thread, the connections
    checked out of it (so a deadline can shut them down) and refuses to hand one out once
    that thread's call is past its deadline (no retry after it)."""

    def _get_conn(self: Any, timeout: float | None = None) -> Any:
        state = _thread_conns()
        if state.call is not None and state.call.expired:
            raise DeadlineExpired("S3 request deadline passed")
        conn = base._get_conn(self, timeout)
        with state.lock:
            state.conns.add(conn)
        conn._kiok_holder = state
        return conn

    def _put_conn(self: Any, conn: Any) -> None:
        # The thread that checked it out lets go of it (even if another thread returns it).
        holder: _ThreadConns | None = getattr(conn, "_kiok_holder", None)
        if holder is not None:
            with holder.lock:
                holder.conns.discard(conn)
            conn._kiok_holder = None
        base._put_conn(self, conn)

    return type(f"Deadline{base.__name__}", (base,), {"_get_conn": _get_conn, "_put_conn": _put_conn})


def install(client: Any) -> bool:
    """Make ``client``'s HTTP session use the deadline-aware pools (its pools are created on
    first use, from this table). False when botocore's layout is not the expected one."""
    import botocore.awsrequest

    classes = getattr(
        getattr(getattr(client, "_endpoint", None), "http_session", None), "_pool_classes_by_scheme", None
    )
    if not isinstance(classes, dict):
        return False
    classes["http"] = _deadline_pool(botocore.awsrequest.AWSHTTPConnectionPool)
    classes["https"] = _deadline_pool(botocore.awsrequest.AWSHTTPSConnectionPool)
    return True


def run_within(timeout_s: float, fn: Callable[[], _T]) -> tuple[_T | None, bool, float]:
    """``fn()`` within ``timeout_s``: (its result, whether the deadline passed, seconds taken).
    When it passed, an exception of ``fn`` is swallowed (the cut caused it) and its result,
    if any, may be a truncated answer that only looks complete. A call made inside another
    (on the same thread) runs within the outer one's deadline."""
    state = _thread_conns()
    began = time.monotonic()
    if state.call is not None:  # inside another call: its deadline holds
        return fn(), False, time.monotonic() - began
    call = _Call(state)
    state.call = call
    timer = threading.Timer(timeout_s, call.expire)
    timer.daemon = True
    result: _T | None = None
    try:
        timer.start()  # in here: a thread that cannot start still leaves ``state.call`` clear
        result = fn()
    except Exception:
        if not call.expired:
            raise
    finally:
        timer.cancel()
        with state.lock:
            state.call = None
    return result, call.expired, time.monotonic() - began


__all__ = ["DeadlineExpired", "install", "run_within"]
