"""The worker's side of the internal protocol: a ``MasterLink`` over one TCP connection.

The worker opens the connection (so it works behind NAT), says HELLO with its credential —
or, on its very first start, the one-time join token, which the master exchanges for a
credential that is saved with mode 0600 — and then carries offers in, reports, logs and
heartbeats out. Terminal task reports go through the fsync'd ``Outbox`` and are replayed
after every reconnect until acknowledged; a report the master rejects as fenced makes the
worker abandon that run (stop its tasks): another driver owns it now.

Log batches travel like reports: each is kept (in memory) until the master acknowledges it
was stored, and a terminal report written to the outbox carries the run's unacknowledged
batches with it, so a worker restarted on the same data directory sends them too. After a
reconnect the worker sends, in order: unacknowledged log batches, the progress reports it
could not send while cut off (latest record per task), then the outbox's terminal reports,
each after the log batches it carries. Batches carry their offset in the driver's stream,
so the master stores each byte once however often it is sent.

Credential or token: a saved credential is always tried first, and while the master accepts
it the join token is never sent. Only when the master refuses the credential (revoked,
unknown, wrong) and a join token is configured does the next hello carry the token; when the
token is accepted, its new credential replaces the stale file. A refused identity (at hello,
or a revocation while connected) stops every run this worker drives, dropping their
assignments and the secrets in them: the masters give those runs to other workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack

from kiok.core.states import TERMINAL_TASK_STATES
from kiok.errors import ProtocolError
from kiok.ids import RUN_LOG_TASK
from kiok.protocol.codec import FROM_MASTER, decode, encode, kind_of
from kiok.protocol.framing import Silent, read_frame, write_frame
from kiok.protocol.kinds import Kind
from kiok.protocol.messages import PROTOCOL_VERSION, Claim, Fence, Message, OfferReply, OfferVerdict, Refusal
from kiok.protocol.to_master import (
    HELLO_RUNS_BYTES,
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
    PermitGrant,
    Refused,
    ReportAck,
    Welcome,
)
from kiok.text_file import write_private
from kiok.waits import wait_set, within
from kiok.worker.outbox import Outbox
from kiok.worker.reconnect_log import ConnectFailures

if TYPE_CHECKING:
    from kiok.worker.worker import Worker

log = logging.getLogger(__name__)

#: How a worker opens a connection to a master at (host, port).
Connect = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]

#: Pauses between connection attempts. Short, because a worker cut off from the masters for
#: longer than the heartbeat timeout (5 s by default) loses its runs to other workers.
_BACKOFF_S = (0.1, 0.2, 0.5, 1.0)
#: Refusals that say this worker's identity is not accepted (as opposed to "try elsewhere").
_IDENTITY_REFUSED = frozenset({Refusal.UNAUTHENTICATED, Refusal.REVOKED})
#: Unacknowledged log bytes kept in memory at most; past it the oldest batches are dropped
#: (with one warning): a master unreachable for that long loses the oldest output.
_PENDING_LOG_BYTES = 64 * 1024 * 1024
#: The master's silence a worker bears when the master does not answer heartbeats.
_SILENT_FOR_LONG_S = 24 * 3600.0
#: How long a master left for its silence comes after the others (``_next_master``).
_AVOID_SILENT_S = 30.0


def parse_masters(text: str) -> list[tuple[str, int]]:
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        host, _, port = item.rpartition(":")
        if not host or not (port.isascii() and port.isdigit()):
            raise ValueError(f"kiok.worker.masters: {item!r} is not host:port")
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"kiok.worker.masters: {item!r} names port {int(port)}, not one of 1-65535")
        out.append((host, int(port)))
    if not out:
        raise ValueError("kiok.worker.masters is empty")
    return out


class MasterClient:
    #: A start is committed on its own, by ``confirm_start``'s round trip (``MasterLink``).
    starts_in_reports = False
    may_be_cut_off = True

    def __init__(
        self,
        masters: list[tuple[str, int]],
        worker_id: str,
        *,
        credential_file: Path,
        join_token: str,
        outbox: Outbox,
        heartbeat_interval_s: float,
        connect_timeout_s: float,
        io_timeout_s: float,
        max_frame_bytes: int,
        ssl_context: ssl.SSLContext | None = None,
        status_url: str = "",
        connect: Connect | None = None,
        refused_retry_s: float = 15.0,
    ) -> None:
        self._masters = masters
        #: Opens a connection to a master (TCP; the simulator's in-memory network in tests).
        self._connect: Connect = connect or self._open_tcp
        #: Where this worker's status port is reached, told in the hello (the masters show it).
        self._status_url = status_url
        #: How long to wait after a master refused this worker (``kiok.worker.refused.retry.ms``):
        #: retrying fast cannot help a bad credential, a revocation or a version, and would trip
        #: the master's per-address limit on failed authentications.
        self._refused_retry_s = refused_retry_s
        self._worker_id = worker_id
        self._credential_file = credential_file
        self._join_token = join_token
        self._outbox = outbox
        self._heartbeat_s = heartbeat_interval_s
        #: How long the master may say nothing before this worker leaves it for another: its
        #: heartbeat timeout when it answers heartbeats (``KEEPALIVE``); older masters may
        #: stay silent for long, so then a day.
        self._silence_s = _SILENT_FOR_LONG_S
        #: The master left last for its silence, and until when it comes after the others.
        self._avoid: tuple[tuple[str, int] | None, float] = (None, 0.0)
        self._connect_timeout_s = connect_timeout_s
        self._io_timeout_s = io_timeout_s
        self._max_frame = max_frame_bytes
        self._ssl = ssl_context
        self._worker: Worker | None = None
        self._out: asyncio.Queue[Message | None] | None = None
        self._connected = asyncio.Event()
        self._ids = itertools.count(1)
        self._permit_waiters: dict[int, asyncio.Future[None]] = {}
        #: Global task permits this worker's attempts hold: granted over this connection or an
        #: earlier one (each hello says how many, and the master counts them against the cap).
        self._permits_held = 0
        self.state = "connecting"
        #: The leader's address, as a master that does not lead named it.
        self._redirect: tuple[str, int] | None = None
        #: The highest leader term seen: a master with an older one is a deposed leader.
        self.max_term = 0
        self._stopping = False
        self._stop = asyncio.Event()
        #: Failed attempts since the last welcome: what of them is worth a log line.
        self._failures = ConnectFailures()
        #: The current connection was welcomed (a broken one then restarts the back-off).
        self._welcomed = False
        #: The master refused the saved credential: the next hellos carry the join token.
        self._credential_refused = False
        self._credential_refusal = ""
        #: What the last hello authenticated with ("credential", "joinToken" or "").
        self._sent_auth = ""
        #: Reconnect without the back-off (the token is to follow a refused credential).
        self._retry_now = False
        self._log_ids = itertools.count(1)
        #: Log batches not yet acknowledged, in the order written, by request id.
        self._logs: dict[int, Log] = {}
        self._log_bytes = 0
        self._shed_warned = False
        #: Progress (non-terminal) reports written while cut off: (run, term, epoch) -> records.
        self._held: dict[tuple[str, int, int], dict[str, dict[str, Any]]] = {}
        #: Attempt starts of this event-loop turn, not yet sent: (run, term, epoch) -> their
        #: RUNNING records and the future their drivers wait on (``confirm_start``).
        self._starts_unsent: dict[_RunFence, tuple[dict[str, dict[str, Any]], asyncio.Future[bool]]] = {}
        #: Sent starts awaiting their commit, by (negative) request id; sent again after a
        #: reconnect until acknowledged.
        self._starts: dict[int, _Start] = {}
        #: How long after a start was sent its acknowledgement still lets the attempt begin:
        #: half the masters' heartbeat timeout (told in the WELCOME). The masters keep a run
        #: with its driver for that timeout after they last heard from it, so an answer that
        #: took longer (a stalled process, a network that held it) may be about a run that has
        #: moved since: the start is confirmed again instead.
        self._start_lease_s = 2.5
        self._start_ids = itertools.count(1)

    def attach(self, worker: Worker) -> None:
        self._worker = worker

    # --- MasterLink ------------------------------------------------------------------------

    def report_tasks(self, run_id: str, fence: Fence, tasks: dict[str, dict[str, Any]]) -> None:
        record = {"run": run_id, "term": fence.term, "epoch": fence.epoch, "tasks": tasks}
        key = 0
        if any(t.get("state") in TERMINAL_TASK_STATES for t in tasks.values()):
            # Durable until the master acknowledges it, with the run's log batches not yet
            # acknowledged (they are sent before it if the worker restarts).
            logs = [
                [b.task_id, b.offset, b.data, b.final]
                for b in self._logs.values()
                if b.run_id == run_id
                and (b.task_id in tasks or b.task_id == RUN_LOG_TASK)
                and b.fence == fence
            ]
            key = self._outbox.put({**record, "logs": logs} if logs else record)
        elif self._out is None:  # cut off: the latest record of each task goes after reconnecting
            self._held.setdefault((run_id, fence.term, fence.epoch), {}).update(tasks)
            return
        self._send(Report(run_id, fence, tasks, request=key))

    def append_log(
        self, run_id: str, fence: Fence, task_id: str, data: bytes, *, offset: int, final: bool
    ) -> None:
        if not data:
            return
        request = next(self._log_ids)
        batch = Log(run_id, fence, task_id, data, offset, final, request=request)
        self._logs[request] = batch
        self._log_bytes += len(data)
        if self._log_bytes > _PENDING_LOG_BYTES:
            self._shed_logs()
        self._send(batch)

    def _shed_logs(self) -> None:
        while self._log_bytes > _PENDING_LOG_BYTES and len(self._logs) > 1:
            batch = self._logs.pop(next(iter(self._logs)))
            self._log_bytes -= len(batch.data)
        if not self._shed_warned:
            self._shed_warned = True
            log.warning(
                "more than %d MiB of task output is waiting for a master: dropping the oldest",
                _PENDING_LOG_BYTES // (1024 * 1024),
            )

    def confirm_start(
        self, run_id: str, fence: Fence, task_id: str, record: dict[str, Any]
    ) -> Awaitable[bool]:
        key = (run_id, fence.term, fence.epoch)
        entry = self._starts_unsent.get(key)
        if entry is None:
            loop = asyncio.get_running_loop()
            entry = ({}, loop.create_future())
            if not self._starts_unsent:
                loop.call_soon(self._send_starts)
            self._starts_unsent[key] = entry
        entry[0][task_id] = record
        # Shielded: a driver whose attempt is cancelled must not cancel its neighbours' wait.
        return asyncio.shield(entry[1])

    def _send_starts(self) -> None:
        """One REPORT per (run, fence) for the starts of this turn. Its id is negative: the
        master acknowledges it once committed, like an outbox report, but it is no outbox
        entry (a worker that dies before the ack never started those attempts)."""
        unsent, self._starts_unsent = self._starts_unsent, {}
        for key, (tasks, fut) in unsent.items():
            self._send_start(_Start(key, tasks, fut, 0.0))

    def _send_start(self, start: _Start) -> None:
        request = -next(self._start_ids)
        start.sent_at = asyncio.get_running_loop().time()
        self._starts[request] = start
        self._send(_start_frame(request, start.run_fence, start.tasks))

    def _start_confirmed(self, request: int, fenced: bool) -> None:
        start = self._starts.pop(request, None)
        if start is None or start.fut.done():
            return
        if fenced:
            start.fut.set_result(False)
        elif asyncio.get_running_loop().time() - start.sent_at > self._start_lease_s:
            self._send_start(start)  # a late answer proves nothing about now: ask again
        else:
            start.fut.set_result(True)

    def release_run(self, run_id: str, fence: Fence, reason: str) -> None:
        self._send(Release(run_id, fence, reason))

    async def acquire_task_permit(self) -> None:
        while True:
            await self._connected.wait()
            request = next(self._ids)
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._permit_waiters[request] = fut
            self._send(Permit(request=request))
            try:
                await fut
            except ConnectionError:
                continue  # the connection dropped before the grant: ask the next one
            except asyncio.CancelledError:
                # Granted as the attempt was being cancelled (an abandon read in the same
                # batch of frames): the grant is ours, so it is given back, not held for good.
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    self._send(PermitFree())
                raise
            finally:
                self._permit_waiters.pop(request, None)
            self._permits_held += 1
            return

    def release_task_permit(self) -> None:
        if self._permits_held > 0:
            self._permits_held -= 1
            self._send(PermitFree())  # lost with a closed connection: the next hello's count

    def claims(self) -> list[dict[str, Any]]:
        """The runs this worker holds, with their fences: those it drives, and those whose
        driver finished but whose terminal reports the masters have not acknowledged (they
        are replayed on connect; until they commit, the run is this worker's)."""
        assert self._worker is not None
        claims = self._worker.claims()
        driven = {claim["run"] for claim in claims}
        for run_id, (term, epoch) in self._outbox.held_runs().items():
            if run_id not in driven:
                claims.append({"run": run_id, "term": term, "epoch": epoch})
        return claims

    def _claims(self) -> tuple[Claim, ...]:
        return tuple(Claim(c["run"], Fence(c["term"], c["epoch"])) for c in self.claims())

    def _send(self, message: Message) -> None:
        if self._out is not None:
            self._out.put_nowait(message)

    # --- connection lifecycle --------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve, reconnect with back-off, until ``stop``. A master that does not
        lead names the leader: that is where the next attempt goes, at once. Failures are
        logged as ``reconnect_log`` says: masters down for long are one line a minute."""
        attempt = 0
        masters = itertools.cycle(self._masters)
        while True:
            host, port = self._next_master(masters)
            if self._stopping:
                return
            self._welcomed = False
            try:
                await self._session(host, port)
            except (OSError, ConnectionError, ProtocolError, TimeoutError) as e:
                if not self._stopping:
                    line = self._failures.failed(
                        f"connection to master {host}:{port}: {e}", time.monotonic(), time.time()
                    )
                    log.log(line.level, "%s", line.text)
                if isinstance(e, Silent):
                    self._avoid = ((host, port), time.monotonic() + _AVOID_SILENT_S)
            finally:
                self._on_disconnect()
            if self._welcomed:
                # A connection that worked and then broke starts the back-off afresh: the
                # masters keep this worker's runs for the heartbeat timeout only, so it must
                # come back at once, not after the pauses of failures long past.
                attempt = 0
            if self._stopping:
                return
            if self._retry_now:
                self._retry_now = False
                delay = 0.0
            elif self.state == "looking for the leader":
                delay = 0.05 if self._redirect else _BACKOFF_S[min(attempt, 2)]
            elif self.state.startswith("refused"):
                delay = self._refused_retry_s
            else:
                delay = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
            await wait_set(self._stop, delay)  # a stop cuts the back-off short
            attempt += 1

    def _next_master(self, masters: Iterator[tuple[str, int]]) -> tuple[str, int]:
        """Where the next connection goes: the leader a master named, else the next master.
        One this worker left for its silence (frozen, or its host gone without closing the
        connection: it may still accept connections and never answer) comes after the others
        for ``_AVOID_SILENT_S``, unless a master names it the leader (its path was slow only:
        the masters elect another leader within the heartbeat timeout of a frozen one)."""
        if self._redirect is not None:
            candidate, self._redirect = self._redirect, None
            return candidate
        candidate = next(masters)
        avoided, until = self._avoid
        if time.monotonic() >= until:
            return candidate
        for _ in self._masters:
            if candidate != avoided:
                return candidate
            candidate = next(masters)
        return candidate  # it is the only master

    async def stop(self) -> None:
        """Close the connection, after a goodbye when no run is held any more (the worker's
        runs were given back): the master then drops this worker at once."""
        self._stopping = True
        self._stop.set()
        if self._out is not None:
            w = self._worker
            if w is not None and self._welcomed and not self.claims():
                self._out.put_nowait(Heartbeat(w.total_slots - w.busy_slots, True, (), leaving=True))
            self._out.put_nowait(None)

    async def _open_tcp(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port, ssl=self._ssl)

    def _credential(self) -> str | None:
        try:
            return self._credential_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def _save_credential(self, credential: str) -> None:
        self._credential_file.parent.mkdir(parents=True, exist_ok=True)
        write_private(self._credential_file, credential)

    def _hello(self) -> Hello:
        """The first frame of a connection: who this worker is, how it authenticates, the runs
        it holds and the global permits its running attempts hold."""
        assert self._worker is not None
        credential, join_token = self._auth()
        claims = self._claims()
        first = _fitting(claims, HELLO_RUNS_BYTES)
        return Hello(
            self._worker_id,
            tuple(self._worker.labels),
            self._worker.total_slots,
            first,
            capabilities=(KEEPALIVE,),
            task_isolation=self._worker.task_isolation,
            status_url=self._status_url,
            credential=credential,
            join_token=join_token,
            # The first heartbeat names them all: those past what fits, and those of outbox
            # files whose fence reads only with the keys the WELCOME brings (the failover
            # re-probe: an upgraded worker's earlier-format files claimed nothing).
            more_runs=len(first) < len(claims) or self._outbox.unknown_fences > 0,
            permits=min(self._permits_held, self._worker.total_slots),
        )

    async def _session(self, host: str, port: int) -> None:
        assert self._worker is not None
        reader, writer = await within(self._connect(host, port), self._connect_timeout_s)
        try:
            await write_frame(writer, encode(self._hello()), timeout_s=self._io_timeout_s)
            raw = await read_frame(reader, timeout_s=self._connect_timeout_s, max_frame_bytes=self._max_frame)
            if raw is None:
                hint = (
                    " (a TLS master may require a client certificate: kiok.tls.cert/key)"
                    if self._ssl
                    else " (this worker connects in plain TCP: if the master serves TLS, set kiok.tls.ca "
                    "to the CA that signed its certificate)"
                )
                raise ConnectionError(f"the master closed the connection during the hello{hint}")
            if kind_of(raw) not in (Kind.REFUSED, Kind.WELCOME):
                raise ProtocolError("expected a welcome")
            answer = decode(raw)
            if isinstance(answer, Refused):
                self._refused(answer, f"{host}:{port}")
                return
            assert isinstance(answer, Welcome)
            term = answer.term
            if term < self.max_term:
                self.state = "looking for the leader"
                log.warning(
                    "master %s:%d leads an old term (%d < %d): trying another",
                    host,
                    port,
                    term,
                    self.max_term,
                )
                return
            self.max_term = term
            if answer.heartbeat_timeout_ms:
                self._start_lease_s = answer.heartbeat_timeout_ms / 2000
            self._silence_s = _SILENT_FOR_LONG_S
            if answer.keepalive and answer.heartbeat_timeout_ms:
                # A master silent for half the time it drops a silent worker after is left
                # (frozen, or its host gone without closing the connection: the new leader is
                # elsewhere), so the worker is back, at the new leader, well within that time
                # (a new leader keeps a worker's runs for it as long); never under three of
                # its own heartbeats.
                self._silence_s = max(answer.heartbeat_timeout_ms / 2000, 3 * self._heartbeat_s)
            if answer.outbox_keys is None:
                raise ProtocolError("welcome: field 'outboxKeys' missing or of the wrong type")
            self._outbox.set_keys(answer.outbox_keys.keyring())
            if answer.credential is not None:
                self._save_credential(answer.credential)
                self._credential_refused = False
                log.info("admitted with the join token; credential saved to %s", self._credential_file)
            self._sent_auth = "credential"  # from here on, this worker is its credential
            self._welcomed = True
            self.state = "connected"
            log.info(
                "connected to master %s:%d (protocol v%d%s)",
                host,
                port,
                PROTOCOL_VERSION,
                f"; left after {self._silence_s:g} s of silence"
                if self._silence_s < _SILENT_FOR_LONG_S
                else "",
            )
            if (again := self._failures.connected(f"{host}:{port}")) is not None:
                log.log(again.level, "%s", again.text)
            await self._serve(reader, writer)
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        out: asyncio.Queue[Message | None] = asyncio.Queue()
        self._out = out
        self._replay(out)
        self._connected.set()
        tasks = [
            asyncio.create_task(self._write_loop(writer, out)),
            asyncio.create_task(self._read_loop(reader)),
            asyncio.create_task(self._heartbeats()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            errors = [err for task in done if (err := task.exception()) is not None]  # each retrieved
            if errors:
                raise errors[0]
        finally:
            for task in tasks:
                task.cancel()
            # Wait for them to end, so none is left holding an exception nobody retrieves.
            await asyncio.gather(*tasks, return_exceptions=True)

    def _replay(self, out: asyncio.Queue[Message | None]) -> None:
        """What the last connection may not have delivered: unacknowledged log batches, the
        outbox's terminal reports, oldest first, each after the log batches it carries (those
        written by an earlier process exist nowhere else; this process's own are among the
        batches above, or stored), the progress held while cut off, then the attempt starts
        awaiting their commit (both after the ends of the upstreams they may wait for, as
        when sent); then every driver's whole state (``Worker.report_all``)."""
        for batch in self._logs.values():
            out.put_nowait(batch)
        ended = self._replay_outbox(out)
        for (run_id, term, epoch), tasks in self._held.items():
            # After the ends (a start held here must not commit before its upstream's end),
            # without the tasks whose end was just sent (that would be a stale report).
            later = {t: r for t, r in tasks.items() if t not in ended.get((run_id, term, epoch), ())}
            if later:
                out.put_nowait(Report(run_id, Fence(term, epoch), later))
        self._held = {}
        for request, start in self._starts.items():
            out.put_nowait(_start_frame(request, start.run_fence, start.tasks))
        if self._worker is not None:  # last: the masters' copy may be older than the drivers'
            self._worker.report_all()

    def _replay_outbox(self, out: asyncio.Queue[Message | None]) -> dict[tuple[str, int, int], set[str]]:
        """Queue the outbox's terminal reports; the tasks they end, by (run, term, epoch)."""
        ended: dict[tuple[str, int, int], set[str]] = {}
        for key, record in self._outbox.pending():
            logs = record.pop("logs", None) or ()
            run_id, fence = record["run"], Fence(record["term"], record["epoch"])
            if key <= self._outbox.recovered:
                for task, offset, data, final in logs:
                    out.put_nowait(Log(run_id, fence, task, data, offset, final))
            out.put_nowait(Report(run_id, fence, record["tasks"], request=key))
            ended.setdefault((run_id, fence.term, fence.epoch), set()).update(record["tasks"])
        return ended

    def _auth(self) -> tuple[str | None, str | None]:
        """The hello's authentication, (credential, join token): the saved credential unless
        the master refused it and a join token is configured; then the token."""
        credential = self._credential()
        if credential and not (self._credential_refused and self._join_token):
            self._sent_auth = "credential"
            return credential, None
        if self._join_token:
            self._sent_auth = "joinToken"
            return None, self._join_token
        self._sent_auth = ""
        return None, None

    def _refused(self, m: Refused, who: str) -> None:
        code = m.code
        reason = m.reason
        if self._sent_auth == "joinToken" and (code in _IDENTITY_REFUSED or code == Refusal.RATE_LIMITED):
            # The token got nowhere either (refused, or too many failures to be looked at):
            # the next attempt offers the credential again. A master restored from a backup
            # (disaster recovery) knows it again once the restore is done, and a valid
            # credential is taken whatever the failures counted.
            self._credential_refused = False
        if code in _IDENTITY_REFUSED:
            if self._sent_auth == "joinToken" and self._credential_refusal:
                reason = f"{self._credential_refusal}; and the join token: {reason}"
            if self._identity_refused(reason):  # the token follows at once: the WARNING said so
                self.state = f"credential refused ({reason}); trying the join token"
                return
        if code == Refusal.RATE_LIMITED and self._sent_auth == "credential" and self._join_token:
            # Too many failures from here for this id (its own retries with a revoked
            # credential, say): the credential is not even looked at, but a join token that
            # can be redeemed is taken whatever the count, so it goes at once. Without it, a
            # revoked worker given a new token waited out the limit's window.
            self._credential_refused = True
            self._credential_refusal = reason
            self._retry_now = True
            self.state = f"credential not looked at ({reason}); trying the join token"
            log.warning("the master did not look at the saved credential (%s); trying the join token", reason)
            return
        if code == Refusal.NOT_LEADER:
            self.state = "looking for the leader"
            leader = m.leader
            if leader is not None:
                with contextlib.suppress(ValueError):
                    self._redirect = parse_masters(leader)[0]
            log.info("%s does not lead; leader: %s", who, leader or "unknown yet")
            return
        self.state = f"refused: {reason}"
        log.error("%s refused this worker: %s; trying again in %gs", who, reason, self._refused_retry_s)

    def _identity_refused(self, reason: str) -> bool:
        """The master does not accept who this worker says it is (any more): it may not drive
        runs, so they stop here and the masters reassign them. A refused credential is
        followed at once by the join token, if one is configured and was not just refused:
        then True (no error yet)."""
        assert self._worker is not None
        self._worker.abandon_all(f"this worker's identity was refused ({reason})")
        if self._sent_auth == "credential" and self._join_token:
            self._credential_refused = True
            self._credential_refusal = reason
            self._retry_now = True
            log.warning("the master refused the saved credential (%s); trying the join token", reason)
            return True
        return False

    def _on_disconnect(self) -> None:
        self._connected.clear()
        self._out = None
        if not self.state.startswith("refused") and self.state != "looking for the leader":
            self.state = "connecting"
        for fut in self._permit_waiters.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))

    async def _write_loop(self, writer: asyncio.StreamWriter, out: asyncio.Queue[Message | None]) -> None:
        while True:
            message = await out.get()
            if message is None:
                return
            await write_frame(
                writer, encode(message), timeout_s=self._io_timeout_s, max_frame_bytes=self._max_frame
            )

    async def _heartbeats(self) -> None:
        assert self._worker is not None
        while True:
            w = self._worker
            self._send(Heartbeat(w.total_slots - w.busy_slots, w.draining, self._claims()))
            await asyncio.sleep(self._heartbeat_s)

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        assert self._worker is not None
        worker = self._worker
        while True:
            raw = await read_frame(
                reader, timeout_s=self._silence_s, max_frame_bytes=self._max_frame, progress=True
            )
            if raw is None:
                raise ConnectionError("the master closed the connection")
            kind = kind_of(raw)
            if kind not in FROM_MASTER or kind is Kind.WELCOME:
                raise ProtocolError(f"unexpected message {kind.value!r} from the master")
            m = decode(raw)
            if isinstance(m, Offer):
                assignment = m.assignment
                if assignment.fence.term < self.max_term:
                    reply = OfferReply(
                        OfferVerdict.NAK, f"term {assignment.fence.term} is older than {self.max_term}"
                    )
                else:
                    reply = worker.offer(assignment, assignment.spec.get("dag", {}).get("labels", ()))
                self._send(OfferReply(reply.verdict, reply.reason, request=m.request))
            elif isinstance(m, ReportAck):
                key = m.request
                if key > 0:
                    self._outbox.ack(key)
                elif key < 0:
                    self._start_confirmed(key, m.fenced)
                if m.fenced:
                    worker.abandon(m.run_id, "the master rejected its report (stale fence)", m.fence)
            elif isinstance(m, LogAck):
                batch = self._logs.pop(m.request, None)
                if batch is not None:
                    self._log_bytes -= len(batch.data)
                    if m.fenced:
                        reason = "the master refused its log batch (stale fence)"
                        worker.abandon(batch.run_id, reason, batch.fence)
            elif isinstance(m, Cancel):
                worker.cancel(m.run_id, m.reason or "")
            elif isinstance(m, Abandon):
                for run_id, fence in m.abandoned():
                    worker.abandon(run_id, "the master gave the run to another driver", fence)
            elif isinstance(m, PermitGrant):
                fut = self._permit_waiters.get(m.request)
                if fut is not None and not fut.done():
                    fut.set_result(None)
                else:  # nobody waits any more: give it back
                    self._send(PermitFree())
            elif isinstance(m, Refused):
                self._refused(m, "the master")
                raise ConnectionError(m.reason)
            elif isinstance(m, HeartbeatAck):
                pass  # it is alive: that it came is all it says


def _fitting(claims: tuple[Claim, ...], budget: int) -> tuple[Claim, ...]:
    """The first of ``claims`` whose wire form fits in ``budget`` bytes."""
    size = 0
    for i, claim in enumerate(claims):
        size += len(msgpack.packb(claim.to_wire())) + 1
        if size > budget:
            return claims[:i]
    return claims


_RunFence = tuple[str, int, int]


@dataclass
class _Start:
    """Attempt starts of one (run, fence) awaiting the commit of their RUNNING records."""

    run_fence: _RunFence
    tasks: dict[str, dict[str, Any]]
    fut: asyncio.Future[bool]
    sent_at: float


def _start_frame(request: int, key: _RunFence, tasks: dict[str, dict[str, Any]]) -> Report:
    run_id, term, epoch = key
    return Report(run_id, Fence(term, epoch), tasks, request=request)
