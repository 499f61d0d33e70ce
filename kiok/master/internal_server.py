"""The master's side of the internal protocol (port 19999): admits workers and carries runs
to them and reports back.

A connection starts with the worker's HELLO within the connect deadline: the protocol
version is checked (an unsupported one is refused with a reason, logged on both sides), then
the worker authenticates with its credential or a one-time join token. Failed attempts are
limited per (address, claimed worker id), and a valid credential or redeemable join token is
accepted before that limit is looked at, so no hellos can lock a worker out. After WELCOME the
connection is a ``WorkerHandle`` for the coordinator; what it sends about a run (reports,
releases, logs) counts only while this worker drives that run under its current fence.
Every read has a deadline (the heartbeat timeout: a worker that says nothing for that long
is dropped), every write has one too, and any bad frame closes that one connection and
nothing else.

Anyone who reaches the port can open connections before saying a word, and each holds one of
the process's file descriptors (shared with its store, its Raft links and its admin port)
until its hello deadline. So at most ``MAX_AWAITING_HELLO`` connections wait for their hello
at once; one more closes the one that has waited longest. A real worker sends its hello as
soon as it is connected, so it is never the oldest for long; silent or slow connections are.
With TLS the handshake, which asyncio completes before the server sees the connection, has
the hello deadline too (asyncio's own default is 60 s); connections still in it are not
counted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import logging
import re
import socket
import ssl
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kiok.errors import KiokError, NotLeader, ProtocolError, StoreUnavailable, Unauthenticated
from kiok.protocol.codec import FROM_WORKER, decode, encode, kind_of
from kiok.protocol.framing import read_frame, write_frame
from kiok.protocol.kinds import Kind
from kiok.protocol.link import WorkerInfo
from kiok.protocol.messages import (
    PROTOCOL_VERSION,
    Assignment,
    Claim,
    Fence,
    Message,
    OfferReply,
    OfferVerdict,
    Refusal,
)
from kiok.protocol.to_master import (
    HELLO_MAX_BYTES,
    KEEPALIVE,
    Heartbeat,
    Hello,
    Log,
    Permit,
    PermitFree,
    Release,
    Report,
)
from kiok.protocol.to_worker import (
    Abandon,
    Cancel,
    HeartbeatAck,
    LogAck,
    Offer,
    OutboxKeys,
    PermitGrant,
    Refused,
    ReportAck,
    Welcome,
)
from kiok.security.kms import worker_outbox_keyring
from kiok.security.ratelimit import FailureLimiter
from kiok.waits import within

if TYPE_CHECKING:
    from kiok.master.node import MasterNode

log = logging.getLogger(__name__)

_WORKER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
#: A worker's status URL as its hello may tell it (shown to operators, never fetched).
_STATUS_URL = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]{1,255}")
#: The task isolation modes a worker may name in its hello (``kiok.worker.isolation``).
_TASK_ISOLATION = ("none", "user", "user+pidns")
#: A worker answers an offer at once (it only checks room and labels), from the event loop
#: that sends its heartbeats: one that has not answered within this many heartbeat intervals
#: is frozen or cut off, and the run is offered elsewhere. Every run waiting for a driver
#: waits behind the offer, so this adds to a failover whenever a worker froze in the seconds
#: before it (before: a fixed 3 s, which took a soak's failover to 6.5 s).
_OFFER_TIMEOUT_HEARTBEATS = 1.5
#: ...but never less than this: a live worker on a loaded host must not look frozen.
_OFFER_TIMEOUT_MIN_S = 1.0
#: Runs per connection for which a refused log batch or report is noted (once per run).
_WARNED_RUNS = 64
#: PERMIT requests a connection may have unanswered beyond its task slots (a waiter the
#: worker gave up on leaves one behind until its grant is handed back); past that it floods.
_PERMIT_SLACK = 64
#: Connections that have not sent their hello yet, at most (see the module's docstring).
MAX_AWAITING_HELLO = 256
#: Longest reason a worker's refusal of an offer may give (see ``_shown``).
_REASON_MAX = 200


class GlobalPermits:
    """``kiok.scheduler.max.global.concurrency``: task bodies running cluster-wide, granted in
    the order asked. ``adopt`` counts permits granted before this master led (or over a
    worker's earlier connection) and still held by running attempts, even past the limit: new
    grants then wait until enough are freed."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def used(self) -> int:
        return self._used

    async def acquire(self) -> None:
        if self._used < self._limit and not self._waiters:
            self._used += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # granted as it was cancelled: to the next one
            else:
                self._waiters.remove(fut)
            raise

    def adopt(self, n: int) -> None:
        self._used += n

    def release(self, n: int = 1) -> None:
        self._used = max(0, self._used - n)
        while self._waiters and self._used < self._limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self._used += 1
                fut.set_result(None)


class WorkerConnection:
    """One admitted worker: the coordinator's handle on it."""

    def __init__(
        self,
        server: InternalServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        worker_id: str,
        address: str,
        labels: tuple[str, ...],
        slots: int,
        permits: int = 0,
    ) -> None:
        self._server = server
        self._node = server.node
        self._reader = reader
        self._writer = writer
        self.worker_id = worker_id
        self._address = address
        self._labels = labels
        self._slots = slots
        self._free = slots
        self._draining = False
        self.connected = True
        self.last_seen_ms = self._node.clock_ms()
        #: The same moment on the monotonic clock: how long it has been silent.
        self.last_seen_mono = asyncio.get_running_loop().time()
        self._ids = itertools.count(1)
        self._offers: dict[int, asyncio.Future[OfferReply]] = {}
        self._out: asyncio.Queue[Message | None] = asyncio.Queue()
        self._permits_held = permits
        #: A worker holds at most its task slots' worth of the global permits (those its
        #: running attempts already hold, ``permits``, included).
        self._own_permits = asyncio.Semaphore(slots - permits)
        server.permits.adopt(permits)
        self._permits_asked = 0  # PERMIT requests not yet granted
        self._tasks: set[asyncio.Task[Any]] = set()
        self._warned_logs: set[str] = set()
        self._noted_reports: set[str] = set()
        #: What the worker said in its hello (``kiok.worker.isolation``).
        self.task_isolation = "unknown"
        #: The status URL the worker told in its hello ("" if none): its address in views.
        self.status_url = ""
        #: The worker's HELLO named ``KEEPALIVE``: each HEARTBEAT is answered.
        self.keepalive = False
        #: Its HELLO named only the first of its runs: its first HEARTBEAT names them all.
        self.more_runs = False
        #: It said goodbye (a HEARTBEAT ``leaving``: it shuts down, holding no run): once
        #: disconnected it is dropped at once, not kept for the heartbeat timeout.
        self.leaving = False
        #: The runs it last said it drives (its hello, then each heartbeat that names them).
        self._held: tuple[Claim, ...] = ()

    # --- WorkerHandle ----------------------------------------------------------------------

    def info(self) -> WorkerInfo:
        return WorkerInfo(
            id=self.worker_id,
            address=self.status_url or self._address,
            labels=self._labels,
            slots=self._slots,
            free=self._free,
            connected=self.connected,
            draining=self._draining,
            last_heartbeat_ms=self.last_seen_ms,
            task_isolation=self.task_isolation,
        )

    async def offer(self, assignment: Assignment, labels: Iterable[str]) -> OfferReply:
        if not self.connected:
            return OfferReply(OfferVerdict.NAK, f"worker {self.worker_id} is not connected")
        request = next(self._ids)
        fut: asyncio.Future[OfferReply] = asyncio.get_running_loop().create_future()
        self._offers[request] = fut
        self.send(Offer(assignment, request=request))
        try:
            return await within(fut, self._server.offer_timeout_s)
        except TimeoutError:
            if fut.done() and not fut.cancelled():  # answered in the turn the deadline fired
                return fut.result()
            return OfferReply(OfferVerdict.NAK, f"worker {self.worker_id} did not answer the offer")
        finally:
            self._offers.pop(request, None)

    def cancel(self, run_id: str, reason: str) -> None:
        self.send(Cancel(run_id, reason or None))

    def held(self) -> tuple[Claim, ...]:
        return self._held

    def abandon(self, claims: tuple[Claim, ...]) -> None:
        if claims:
            self.send(Abandon.of(claims))

    def resync(self) -> None:
        """No frame asks a worker for its whole state: it reconnects, and a reconnecting
        worker claims its runs afresh and sends it (``MasterClient._replay``)."""
        self.close("this master's state was restored from a backup: reconnect", code=Refusal.NOT_LEADER)

    def close(self, reason: str, code: str = Refusal.REVOKED) -> None:
        """Refuse and drop this connection now (e.g. the worker was revoked): nothing it
        sends from here on counts."""
        self.send(Refused(code, reason))
        self.send_close()
        self.connected = False

    # --- plumbing --------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        if self.connected:
            self._out.put_nowait(message)

    def send_close(self) -> None:
        self._out.put_nowait(None)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_loop(self) -> None:
        timeout = self._server.io_timeout_s
        while True:
            message = await self._out.get()
            if message is None:
                break
            await write_frame(
                self._writer, encode(message), timeout_s=timeout, max_frame_bytes=self._server.max_frame
            )
        self._writer.close()

    async def serve(self) -> None:
        writer_task = asyncio.create_task(self._write_loop())
        reader_task = asyncio.create_task(self._read_loop())
        try:
            done, _ = await asyncio.wait({writer_task, reader_task}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                err = task.exception()
                if isinstance(err, ProtocolError):
                    log.warning(
                        "worker %s (%s): closing connection: %s", self.worker_id, self._address, err.message
                    )
                elif isinstance(err, (ConnectionError, OSError, TimeoutError)):  # an ordinary disconnect
                    log.info("worker %s (%s): connection lost: %s", self.worker_id, self._address, err)
                elif err is not None:
                    log.error("worker %s connection failed", self.worker_id, exc_info=err)
        finally:
            self.connected = False
            tasks = (writer_task, reader_task, *self._tasks)
            for t in tasks:
                t.cancel()
            for fut in self._offers.values():
                if not fut.done():
                    fut.set_result(OfferReply(OfferVerdict.NAK, "connection lost"))
            self.give_back_permits()
            self._writer.close()
            # Wait for them to end, so none is left holding an exception nobody retrieves (the
            # write of a frame can fail as the connection ends: a traceback in the log).
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read_loop(self) -> None:
        while True:
            message = await read_frame(
                self._reader,
                timeout_s=self._server.heartbeat_timeout_s,
                max_frame_bytes=self._server.max_frame,
                progress=True,
            )
            if message is None:
                return
            self.last_seen_ms = self._node.clock_ms()
            self.last_seen_mono = asyncio.get_running_loop().time()
            self._dispatch(message)

    def _dispatch(self, m: dict[str, Any]) -> None:
        kind = kind_of(m)
        if kind not in FROM_WORKER or kind is Kind.HELLO:
            raise ProtocolError(f"unexpected message {kind.value!r} from a worker")
        message = decode(m)
        if not self.connected:
            return  # closed (revoked, or this master stopped leading): nothing counts any more
        if isinstance(message, Heartbeat):
            if self.keepalive:
                self.send(HeartbeatAck())
            free, draining = min(max(message.free, 0), self._slots), message.draining
            self.leaving = message.leaving
            if self.more_runs:
                # Its hello named only some of its runs; these are all of them: now it takes
                # them back and becomes one of the coordinator's workers.
                self._free, self._draining = free, draining
                if message.runs is not None:
                    self.more_runs = False
                    self._join(message.runs)
                return
            if free > self._free or (self._draining and not draining):  # more room, or undrained
                self._node.coordinator.capacity_freed(self.worker_id)
            self._free = free
            self._draining = draining
            if message.runs is not None:
                self._held = message.runs
                held = {claim.run_id for claim in message.runs}
                self._node.coordinator.claims_seen(self.worker_id, held)
        elif isinstance(message, OfferReply):
            fut = self._offers.get(message.request)
            if fut is not None and not fut.done():
                fut.set_result(OfferReply(message.verdict, _shown(message.reason), request=message.request))
        elif isinstance(message, Report):
            self._report(message)
        elif isinstance(message, Log):
            self._log_batch(message)
        elif isinstance(message, Release):
            self._node.intake.release(self.worker_id, message).add_done_callback(_ignore)
        elif isinstance(message, Permit):
            if self._permits_asked >= self._slots + _PERMIT_SLACK:
                raise ProtocolError(f"more than {self._permits_asked} task permits asked for at once")
            self._permits_asked += 1
            self._spawn(self._grant(message.request))
        elif isinstance(message, PermitFree) and self._permits_held > 0:
            # Only a permit this connection holds frees anything: one that frees nothing must
            # not kick the coordinator either (each kick may cost a dispatch pass over every
            # unfinished run, and a worker can send these few bytes as fast as it likes).
            self._permits_held -= 1
            self._server.permits.release()
            self._own_permits.release()
            self._node.coordinator.capacity_freed(self.worker_id)

    def _join(self, runs: tuple[Claim, ...]) -> None:
        """Give the worker back the runs it claims and still owns (those it no longer owns
        it is told to abandon, each with the fence claimed: a newer driver stays), then make
        it one of the coordinator's workers (offers; cancels committed while it was away).
        Until then it holds its runs as a worker cut off does: none is offered elsewhere
        within the reconnect grace, and it is offered nothing."""
        self._held = runs
        self.abandon(self._node.coordinator.reattach(self.worker_id, runs))
        self._node.coordinator.add_worker(self)

    def _log_batch(self, batch: Log) -> None:
        run_id, request, fence = batch.run_id, batch.request, batch.fence
        if fence is not None:
            try:
                stored = self._node.intake.log_batch(self.worker_id, batch)
            except StoreUnavailable:  # this master stops; the worker keeps the batch (no ack)
                return
            if stored is not False:
                if request:  # the worker keeps the batch until it hears it is stored
                    if stored is True:
                        self.send(LogAck(run_id, request=request))
                    else:
                        stored.add_done_callback(functools.partial(self._log_committed, request, run_id))
                return
            why = f"fence {fence.term}/{fence.epoch}: not the run's driver under that fence, or the run ended"
        else:  # a worker from before log batches carried their fence: refused, not fatal
            self._node.metrics.stale_log_batches.inc()
            why = "no fence: upgrade the worker"
        if request:  # refused for good: the worker drops it, and stops a run it no longer drives
            self.send(LogAck(run_id, fenced=True, request=request))
        # Dropped: a driver that was cut off and replaced, or a worker writing into a run that
        # is not its own. Said once per run and connection (a stale driver sends many).
        if run_id not in self._warned_logs and len(self._warned_logs) < _WARNED_RUNS:
            self._warned_logs.add(run_id)
            log.warning("worker %s: log batches for run %s refused (%s)", self.worker_id, run_id, why)

    def _log_committed(self, request: int, run_id: str, fut: asyncio.Future[Any]) -> None:
        """Acknowledge a log batch once committed; one that was not (leadership moved) stays
        with the worker, which sends it again to the next leader."""
        if not fut.cancelled() and fut.exception() is None:
            self.send(LogAck(run_id, request=request))

    def _report(self, report: Report) -> None:
        request, run_id, fence = report.request, report.run_id, report.fence

        def acked(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled():
                return
            err = fut.exception()
            if err is not None and (not isinstance(err, KiokError) or isinstance(err, NotLeader)):
                return  # not applied (or leadership moved): no ack, the worker replays it
            fenced = err is not None or bool(fut.result().get("fenced"))
            if fenced:
                self._note_fenced_report(run_id, fence)
            self.send(ReportAck(run_id, fence, fenced, request=request))

        # Only reports the worker keeps in its outbox (request id > 0: terminal ones) wait for
        # an fsync before the ack; progress reports need only survive a crash of this process.
        self._node.intake.report(self.worker_id, report, durable=request > 0).add_done_callback(acked)

    def _note_fenced_report(self, run_id: str, fence: Fence) -> None:
        """Say in the run's log that a report was rejected (a late report of a cut-off driver,
        or a worker reporting for a run it never drove): once per run and connection, and only
        for a run that exists. Bad reports must neither grow a run's log without bound nor
        make logs for runs that do not exist."""
        if run_id in self._noted_reports or len(self._noted_reports) >= _WARNED_RUNS:
            return
        self._noted_reports.add(run_id)
        log.warning(
            "worker %s: reports for run %s rejected (stale fence, not its driver, or unknown run)",
            self.worker_id,
            run_id,
        )
        if self._node.reader.run_header(run_id) is not None:
            self._node.run_log(
                run_id,
                f"rejected a report from worker {self.worker_id} "
                f"under stale fence {fence.term}/{fence.epoch}",
            )

    def give_back_permits(self) -> None:
        """The connection is over: the global permits it held go to other attempts (the
        worker's running ones, if it comes back, are counted again from its hello)."""
        self._server.permits.release(self._permits_held)
        self._permits_held = 0

    async def _grant(self, request: int) -> None:
        try:
            # Its own slots first: a worker asking for more than it can run waits on itself,
            # never on (or instead of) the permits other workers' tasks need.
            await self._own_permits.acquire()
            try:
                await self._server.permits.acquire()
            except BaseException:
                self._own_permits.release()
                raise
        finally:
            self._permits_asked -= 1
        if not self.connected:
            self._server.permits.release()
            self._own_permits.release()
            return
        self._permits_held += 1
        self.send(PermitGrant(request=request))


def _shown(reason: str) -> str:
    """A worker's reason for refusing an offer as the masters show it (a line of the run's log,
    the run's waiting reason): about a run the worker does not hold, so one short line that
    cannot pass for lines of the masters' own (control characters, newlines included, become
    spaces) nor grow the run's log by more than a line per refusal."""
    line = "".join(ch if ch.isprintable() else " " for ch in reason[: _REASON_MAX + 1])
    return line if len(line) <= _REASON_MAX else line[: _REASON_MAX - 3] + "..."


def _ignore(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class InternalServer:
    def __init__(
        self, node: MasterNode, *, reserved_ids: Iterable[str] = (), permits: GlobalPermits | None = None
    ) -> None:
        """``reserved_ids``: worker ids no connection may take (a standalone's own worker,
        which is never admitted through a token: one joining under its id would replace it).
        ``permits``: the global task permits, when shared with a worker in this process."""
        s = node.settings
        self.node = node
        self._reserved = frozenset(reserved_ids)
        self.heartbeat_interval_ms = s.get_int("kiok.worker.heartbeat.interval.ms")
        self.heartbeat_timeout_s = s.get_int("kiok.worker.heartbeat.timeout.ms") / 1000
        self.offer_timeout_s = max(
            _OFFER_TIMEOUT_MIN_S, _OFFER_TIMEOUT_HEARTBEATS * self.heartbeat_interval_ms / 1000
        )
        self.connect_timeout_s = s.get_int("kiok.internal.connect.timeout.ms") / 1000
        self.io_timeout_s = s.get_int("kiok.internal.io.timeout.ms") / 1000
        self.max_frame = s.get_int("kiok.internal.max.frame.bytes")
        self.permits = permits or GlobalPermits(s.get_int("kiok.scheduler.max.global.concurrency"))
        self._limiter = FailureLimiter(
            s.get_int("kiok.auth.worker.max.failures"), s.get_int("kiok.auth.login.window.seconds") * 1000
        )
        self.connections: dict[str, WorkerConnection] = {}
        #: Connections waiting for their hello, oldest first (a dict as an ordered set).
        self._awaiting_hello: dict[asyncio.StreamWriter, None] = {}
        self._crowded = False  # connections were closed for room (said once until it eases)
        self._server: asyncio.Server | None = None
        self._lost_timers: dict[str, asyncio.TimerHandle] = {}
        node.revoke_hooks.append(self.revoke)
        node.demotion_hooks.append(self.drop_all)

    def revoke(self, worker_id: str) -> None:
        """Drop a revoked worker now; it cannot come back, so its runs are reassigned at once."""
        conn = self.connections.pop(worker_id, None)
        if conn is not None:
            conn.close(f"worker {worker_id} was revoked")
        timer = self._lost_timers.pop(worker_id, None)
        if timer is not None:
            timer.cancel()
        self.node.coordinator.worker_lost(worker_id)

    def drop_all(self) -> None:
        """This master stopped leading: every worker goes to find the new leader."""
        for conn in list(self.connections.values()):
            conn.close("this master no longer leads", code=Refusal.NOT_LEADER)

    async def start(self, sock: socket.socket, ssl_context: ssl.SSLContext | None = None) -> None:
        """Serve on ``sock``, bound and listening already (``kiok.roots.startup.listen_socket``)."""
        self._server = await asyncio.start_server(
            self._handle,
            sock=sock,
            ssl=ssl_context,
            ssl_handshake_timeout=self.connect_timeout_s if ssl_context is not None else None,
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections.values()):
            conn.send_close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        conn: WorkerConnection | None = None
        self._await_hello(writer, address)
        try:
            conn = await self._admit(reader, writer, address)
            if conn is not None:
                await conn.serve()
        except ProtocolError as e:
            log.warning("internal connection from %s closed: %s", address, e.message)
        except (ConnectionError, OSError) as e:
            log.info("internal connection from %s dropped: %s", address, e)
        finally:
            self._awaiting_hello.pop(writer, None)
            writer.close()
            if conn is not None:
                self._disconnected(conn)

    def _await_hello(self, writer: asyncio.StreamWriter, address: str) -> None:
        """Note a connection that has not sent its hello; past ``MAX_AWAITING_HELLO`` the one
        that has waited longest is closed (its read of the hello then ends)."""
        self._awaiting_hello[writer] = None
        if len(self._awaiting_hello) > MAX_AWAITING_HELLO:
            oldest = next(iter(self._awaiting_hello))
            del self._awaiting_hello[oldest]
            if not self._crowded:  # said once per crowd, not once per connection closed
                self._crowded = True
                log.warning(
                    "more than %d internal connections are waiting for their hello (the newest "
                    "from %s): closing the oldest ones",
                    MAX_AWAITING_HELLO,
                    address,
                )
            oldest.transport.abort()  # at once: a TLS close would wait for the silent peer
        elif self._crowded and len(self._awaiting_hello) < MAX_AWAITING_HELLO // 2:
            self._crowded = False

    async def _refuse(
        self, writer: asyncio.StreamWriter, code: str, reason: str, address: str, leader: str | None = None
    ) -> None:
        (log.info if code == Refusal.NOT_LEADER else log.warning)(
            "refused internal connection from %s: %s", address, reason
        )
        with contextlib.suppress(ProtocolError, ConnectionError, OSError):
            await write_frame(writer, encode(Refused(code, reason, leader)), timeout_s=self.io_timeout_s)

    async def _admit(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str
    ) -> WorkerConnection | None:
        raw = await read_frame(reader, timeout_s=self.connect_timeout_s, max_frame_bytes=HELLO_MAX_BYTES)
        # It spoke: never closed to make room from here on (it may be spending a join token).
        self._awaiting_hello.pop(writer, None)
        if raw is None:
            return None
        if kind_of(raw) is not Kind.HELLO:
            raise ProtocolError("the first frame must be a hello")
        # The version first: a hello of another version may not even parse as ours.
        if raw.get("v") != PROTOCOL_VERSION:
            await self._refuse(
                writer,
                Refusal.UNSUPPORTED_VERSION,
                f"unsupported protocol version {repr(raw.get('v'))[:64]}; "  # quoted short: it is anyone's
                f"this master speaks version {PROTOCOL_VERSION}",
                address,
            )
            return None
        if self.node.raft is not None and not self.node.leadership.leading:
            leader = self.node.leadership.leader_internal_address()
            await self._refuse(
                writer,
                Refusal.NOT_LEADER,
                f"master {self.node.node_id} does not lead; leader: {leader or 'not known yet'}",
                address,
                leader=leader,
            )
            return None
        # Every field is checked (here, and by the codec) before a join token can be spent.
        hello = Hello.from_wire(raw)
        worker_id = hello.worker
        if not _WORKER_ID.match(worker_id):
            raise ProtocolError(f"invalid worker id {worker_id[:128]!r}")
        if worker_id in self._reserved:  # before a join token is spent
            await self._refuse(
                writer,
                Refusal.UNAUTHENTICATED,
                f"worker id {worker_id!r} is this standalone's own worker's: "
                "give the joining worker another kiok.worker.id",
                address,
            )
            return None
        credential = await self._authenticate(hello, worker_id, address, writer)
        if credential is None:
            return None
        labels = tuple(sorted({x.strip().lower() for x in hello.labels if x.strip()}))
        conn = WorkerConnection(self, reader, writer, worker_id, address, labels, hello.slots, hello.permits)
        isolation = hello.task_isolation
        conn.task_isolation = isolation if isolation in _TASK_ISOLATION else "unknown"
        conn.keepalive = KEEPALIVE in hello.capabilities
        status_url = hello.status_url
        if _STATUS_URL.fullmatch(status_url):
            conn.status_url = status_url  # where it is reached; else its connection's address
        old = self.connections.get(worker_id)
        if old is not None:
            old.send_close()
        timer = self._lost_timers.pop(worker_id, None)
        if timer is not None:
            timer.cancel()
        self.connections[worker_id] = conn
        ring = self.node.keyring
        welcome = Welcome(
            worker_id,
            self.node.coordinator.term,
            self.heartbeat_interval_ms,
            int(self.heartbeat_timeout_s * 1000),
            None if ring is None else OutboxKeys.of(worker_outbox_keyring(ring, worker_id)),
            credential or None,
            keepalive=conn.keepalive,
        )
        try:
            await write_frame(writer, encode(welcome), timeout_s=self.io_timeout_s)
        except Exception:
            # The worker died, or its network went, right then. This connection replaced its
            # last one and stopped its lost timer: it must start one of its own, or the worker
            # would never be lost and its runs would stall until it came back.
            conn.connected = False
            conn.give_back_permits()
            self._disconnected(conn)
            raise
        if hello.more_runs:
            conn.more_runs = True  # it joins with its first heartbeat, which names them all
        else:
            conn._join(hello.runs)
        log.info(
            "worker %s connected from %s (labels %s, %s slots)",
            worker_id,
            address,
            list(labels),
            conn.info().slots,
        )
        return conn

    async def _authenticate(
        self, hello: Hello, worker_id: str, address: str, writer: asyncio.StreamWriter
    ) -> str | None:
        """Check the hello's credential or redeem its join token: the new credential for a
        redeemed token, "" for a valid credential, None once refused (the REFUSED is sent).

        Failures count per (address, worker id). A valid credential or a join token that can be
        redeemed is accepted whatever that count (each is a 256-bit secret, checked locally), so
        garbage hellos from the same host — naming any ids, this worker's included (a task on
        its host can send them) — cannot keep a worker out or from joining."""
        key = f"{address.rsplit(':', 1)[0]}\x00{worker_id}"
        now = self.node.clock_ms()
        offered = hello.credential
        token = hello.join_token
        try:
            if isinstance(offered, str):
                try:
                    self.node.admission.verify(worker_id, offered)
                except Unauthenticated:
                    if self._limiter.retry_after_ms(key, now):
                        await self._rate_limited(writer, key, now, address)
                        return None
                    raise
                self._limiter.succeeded(key)
                return ""
            if self._limiter.retry_after_ms(key, now) and not (
                isinstance(token, str) and self.node.admission.redeemable(token, worker_id)
            ):
                await self._rate_limited(writer, key, now, address)
                return None
            if not isinstance(token, str):
                raise Unauthenticated("no credential and no join token (set KIOK_WORKER_JOIN_TOKEN)")
            credential = await self.node.admission.redeem(token, worker_id)
        except Unauthenticated as e:
            self._limiter.failed(key, now)
            await self._refuse(writer, Refusal.UNAUTHENTICATED, e.message, address)
            return None
        self._limiter.succeeded(key)
        return credential

    async def _rate_limited(self, writer: asyncio.StreamWriter, key: str, now: int, address: str) -> None:
        wait_ms = self._limiter.retry_after_ms(key, now)
        await self._refuse(
            writer,
            Refusal.RATE_LIMITED,
            f"too many failed authentications from this address for this worker id (the limit lifts in "
            f"{wait_ms // 1000 + 1}s; a join token that can be redeemed is taken meanwhile)",
            address,
        )

    def _disconnected(self, conn: WorkerConnection) -> None:
        if self.connections.get(conn.worker_id) is not conn:
            return  # replaced by a newer connection of the same worker
        if conn.leaving:  # it said goodbye: it is not coming back to any run
            del self.connections[conn.worker_id]
            log.info("worker %s disconnected: it shut down", conn.worker_id)
            self.node.coordinator.worker_lost(conn.worker_id)
            return
        log.info("worker %s disconnected", conn.worker_id)
        # Its runs stay with it until the heartbeat timeout since it was last heard of,
        # so a worker that reconnects at once keeps driving them. Measured on the monotonic
        # clock: a step of the wall clock neither loses a live worker nor stalls its runs.
        loop = asyncio.get_running_loop()
        delay = max(0.0, conn.last_seen_mono + self.heartbeat_timeout_s - loop.time())

        def lost() -> None:
            self._lost_timers.pop(conn.worker_id, None)
            if self.connections.get(conn.worker_id) is conn:
                del self.connections[conn.worker_id]
                log.warning("worker %s lost: its runs are reassigned", conn.worker_id)
                self.node.coordinator.worker_lost(conn.worker_id)

        self._lost_timers[conn.worker_id] = loop.call_later(delay, lost)
