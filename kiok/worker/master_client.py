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
import os
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiok.core.states import TERMINAL_TASK_STATES
from kiok.errors import ProtocolError
from kiok.ids import RUN_LOG_TASK
from kiok.protocol.framing import read_frame, write_frame
from kiok.protocol.messages import PROTOCOL_VERSION, Fence, OfferReply, OfferVerdict, Refusal
from kiok.protocol.wire import Kind, assignment_from_wire, field, frame, kind_of, outbox_keys_from_wire
from kiok.worker.outbox import Outbox

if TYPE_CHECKING:
    from kiok.worker.worker import Worker

log = logging.getLogger(__name__)

#: How a worker opens a connection to a master at (host, port).
Connect = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]

#: Pauses between connection attempts. Short, because a worker cut off from the masters for
#: longer than the heartbeat timeout (5 s by default) loses its runs to other workers.
_BACKOFF_S = (0.1, 0.2, 0.5, 1.0)
#: After a refusal (bad credential, revoked, version) retrying fast cannot help and would
#: trip the master's per-address limit on failed authentications.
_REFUSED_BACKOFF_S = 15.0
#: Refusals that say this worker's identity is not accepted (as opposed to "try elsewhere").
_IDENTITY_REFUSED = frozenset({Refusal.UNAUTHENTICATED, Refusal.REVOKED})
#: Unacknowledged log bytes kept in memory at most; past it the oldest batches are dropped
#: (with one warning): a master unreachable for that long loses the oldest output.
_PENDING_LOG_BYTES = 64 * 1024 * 1024


def parse_masters(text: str) -> list[tuple[str, int]]:
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"kiok.worker.masters: {item!r} is not host:port")
        out.append((host, int(port)))
    if not out:
        raise ValueError("kiok.worker.masters is empty")
    return out


class MasterClient:
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
    ) -> None:
        self._masters = masters
        #: Opens a connection to a master (TCP; the simulator's in-memory network in tests).
        self._connect: Connect = connect or self._open_tcp
        #: Where this worker's status port is reached, told in the hello (the masters show it).
        self._status_url = status_url
        self._worker_id = worker_id
        self._credential_file = credential_file
        self._join_token = join_token
        self._outbox = outbox
        self._heartbeat_s = heartbeat_interval_s
        self._connect_timeout_s = connect_timeout_s
        self._io_timeout_s = io_timeout_s
        self._max_frame = max_frame_bytes
        self._ssl = ssl_context
        self._worker: Worker | None = None
        self._out: asyncio.Queue[dict[str, Any] | None] | None = None
        self._connected = asyncio.Event()
        self._ids = itertools.count(1)
        self._permit_waiters: dict[int, asyncio.Future[None]] = {}
        self._permits_on_connection = 0
        self.state = "connecting"
        #: The leader's address, as a master that does not lead named it.
        self._redirect: tuple[str, int] | None = None
        #: The highest leader term seen: a master with an older one is a deposed leader.
        self.max_term = 0
        self._stopping = False
        self._stop = asyncio.Event()
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
        #: Log batches not yet acknowledged, in the order written: request id -> LOG fields.
        self._logs: dict[int, dict[str, Any]] = {}
        self._log_bytes = 0
        self._shed_warned = False
        #: Progress (non-terminal) reports written while cut off: (run, term, epoch) -> records.
        self._held: dict[tuple[str, int, int], dict[str, dict[str, Any]]] = {}

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
                [b["task"], b["offset"], b["data"], b["final"]]
                for b in self._logs.values()
                if b["run"] == run_id
                and (b["task"] in tasks or b["task"] == RUN_LOG_TASK)
                and (b["term"], b["epoch"]) == (fence.term, fence.epoch)
            ]
            key = self._outbox.put({**record, "logs": logs} if logs else record)
        elif self._out is None:  # cut off: the latest record of each task goes after reconnecting
            self._held.setdefault((run_id, fence.term, fence.epoch), {}).update(tasks)
            return
        self._send(frame(Kind.REPORT, key, **record))

    def append_log(
        self, run_id: str, fence: Fence, task_id: str, data: bytes, *, offset: int, final: bool
    ) -> None:
        if not data:
            return
        request = next(self._log_ids)
        batch = {
            "run": run_id,
            "term": fence.term,
            "epoch": fence.epoch,
            "task": task_id,
            "data": data,
            "offset": offset,
            "final": final,
        }
        self._logs[request] = batch
        self._log_bytes += len(data)
        if self._log_bytes > _PENDING_LOG_BYTES:
            self._shed_logs()
        self._send(frame(Kind.LOG, request, **batch))

    def _shed_logs(self) -> None:
        while self._log_bytes > _PENDING_LOG_BYTES and len(self._logs) > 1:
            batch = self._logs.pop(next(iter(self._logs)))
            self._log_bytes -= len(batch["data"])
        if not self._shed_warned:
            self._shed_warned = True
            log.warning(
                "more than %d MiB of task output is waiting for a master: dropping the oldest",
                _PENDING_LOG_BYTES // (1024 * 1024),
            )

    def release_run(self, run_id: str, fence: Fence, reason: str) -> None:
        self._send(frame(Kind.RELEASE, run=run_id, term=fence.term, epoch=fence.epoch, reason=reason))

    async def acquire_task_permit(self) -> None:
        while True:
            await self._connected.wait()
            request = next(self._ids)
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._permit_waiters[request] = fut
            self._send(frame(Kind.PERMIT, request))
            try:
                await fut
                self._permits_on_connection += 1
                return
            except ConnectionError:
                continue  # the connection dropped before the grant: ask the next one
            finally:
                self._permit_waiters.pop(request, None)

    def release_task_permit(self) -> None:
        if self._permits_on_connection > 0:
            self._permits_on_connection -= 1
            self._send(frame(Kind.PERMIT_FREE))

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

    def _send(self, message: dict[str, Any]) -> None:
        if self._out is not None:
            self._out.put_nowait(message)

    # --- connection lifecycle --------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve, reconnect with back-off, until ``stop``. A master that does not
        lead names the leader: that is where the next attempt goes, at once."""
        attempt = 0
        masters = itertools.cycle(self._masters)
        while True:
            host, port = self._redirect or next(masters)
            self._redirect = None
            if self._stopping:
                return
            self._welcomed = False
            try:
                await self._session(host, port)
            except (OSError, ConnectionError, ProtocolError, TimeoutError) as e:
                if not self._stopping:
                    log.warning("connection to master %s:%d: %s", host, port, e)
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
                delay = _REFUSED_BACKOFF_S
            else:
                delay = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)  # a stop cuts the back-off short
            attempt += 1

    async def stop(self) -> None:
        self._stopping = True
        self._stop.set()
        if self._out is not None:
            self._out.put_nowait(None)

    async def _open_tcp(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port, ssl=self._ssl)

    def _credential(self) -> str | None:
        try:
            return self._credential_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def _save_credential(self, credential: str) -> None:
        path = self._credential_file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, credential.encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    async def _session(self, host: str, port: int) -> None:
        assert self._worker is not None
        reader, writer = await asyncio.wait_for(self._connect(host, port), self._connect_timeout_s)
        try:
            hello: dict[str, Any] = {
                "worker": self._worker_id,
                "labels": list(self._worker.labels),
                "slots": self._worker.total_slots,
                "runs": self.claims(),
                "capabilities": [],
                "taskIsolation": self._worker.task_isolation,
            }
            if self._status_url:
                hello["statusUrl"] = self._status_url
            hello.update(self._auth())
            await write_frame(writer, frame(Kind.HELLO, **hello), timeout_s=self._io_timeout_s)
            answer = await read_frame(
                reader, timeout_s=self._connect_timeout_s, max_frame_bytes=self._max_frame
            )
            if answer is None:
                hint = (
                    " (a TLS master may require a client certificate: kiok.tls.cert/key)" if self._ssl else ""
                )
                raise ConnectionError(f"the master closed the connection during the hello{hint}")
            if kind_of(answer) is Kind.REFUSED:
                self._refused(answer, f"{host}:{port}")
                return
            if kind_of(answer) is not Kind.WELCOME:
                raise ProtocolError("expected a welcome")
            term = answer.get("term")
            if isinstance(term, int) and term < self.max_term:
                self.state = "looking for the leader"
                log.warning(
                    "master %s:%d leads an old term (%d < %d): trying another",
                    host,
                    port,
                    term,
                    self.max_term,
                )
                return
            if isinstance(term, int):
                self.max_term = term
            self._outbox.set_keys(outbox_keys_from_wire(answer))
            if isinstance(answer.get("credential"), str):
                self._save_credential(answer["credential"])
                self._credential_refused = False
                log.info("admitted with the join token; credential saved to %s", self._credential_file)
            self._sent_auth = "credential"  # from here on, this worker is its credential
            self._welcomed = True
            self.state = "connected"
            log.info("connected to master %s:%d (protocol v%d)", host, port, PROTOCOL_VERSION)
            await self._serve(reader, writer)
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        out: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._out = out
        self._permits_on_connection = 0
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

    def _replay(self, out: asyncio.Queue[dict[str, Any] | None]) -> None:
        """What the last connection may not have delivered: unacknowledged log batches, the
        progress held while cut off, then the outbox's terminal reports, oldest first, each
        after the log batches it carries (those written by an earlier process exist nowhere
        else; this process's own are among the batches above, or stored)."""
        for request, batch in self._logs.items():
            out.put_nowait(frame(Kind.LOG, request, **batch))
        for (run_id, term, epoch), tasks in self._held.items():
            out.put_nowait(frame(Kind.REPORT, run=run_id, term=term, epoch=epoch, tasks=tasks))
        self._held = {}
        for key, record in self._outbox.pending():
            logs = record.pop("logs", None) or ()
            if key <= self._outbox.recovered:
                for task, offset, data, final in logs:
                    fence = {"run": record["run"], "term": record["term"], "epoch": record["epoch"]}
                    out.put_nowait(frame(Kind.LOG, **fence, task=task, data=data, offset=offset, final=final))
            out.put_nowait(frame(Kind.REPORT, key, **record))

    def _auth(self) -> dict[str, str]:
        """The hello's authentication: the saved credential unless the master refused it and
        a join token is configured; then the token."""
        credential = self._credential()
        if credential and not (self._credential_refused and self._join_token):
            self._sent_auth = "credential"
            return {"credential": credential}
        if self._join_token:
            self._sent_auth = "joinToken"
            return {"joinToken": self._join_token}
        self._sent_auth = ""
        return {}

    def _refused(self, m: dict[str, Any], who: str) -> None:
        code = m.get("code")
        reason = str(m.get("reason", ""))
        if code in _IDENTITY_REFUSED:
            if self._sent_auth == "joinToken" and self._credential_refusal:
                reason = f"{self._credential_refusal}; and the join token: {reason}"
            self._identity_refused(reason)
        if code == Refusal.NOT_LEADER:
            self.state = "looking for the leader"
            leader = m.get("leader")
            if isinstance(leader, str):
                with contextlib.suppress(ValueError):
                    self._redirect = parse_masters(leader)[0]
            log.info("%s does not lead; leader: %s", who, leader or "unknown yet")
            return
        self.state = f"refused: {reason}"
        log.error("%s refused this worker: %s", who, reason)

    def _identity_refused(self, reason: str) -> None:
        """The master does not accept who this worker says it is (any more): it may not drive
        runs, so they stop here and the masters reassign them. A refused credential is
        followed at once by the join token, if one is configured and was not just refused."""
        assert self._worker is not None
        self._worker.abandon_all(f"this worker's identity was refused ({reason})")
        if self._sent_auth == "credential" and self._join_token:
            self._credential_refused = True
            self._credential_refusal = reason
            self._retry_now = True
            log.warning("the master refused the saved credential (%s); trying the join token", reason)

    def _on_disconnect(self) -> None:
        self._connected.clear()
        self._out = None
        if not self.state.startswith("refused") and self.state != "looking for the leader":
            self.state = "connecting"
        for fut in self._permit_waiters.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))

    async def _write_loop(
        self, writer: asyncio.StreamWriter, out: asyncio.Queue[dict[str, Any] | None]
    ) -> None:
        while True:
            message = await out.get()
            if message is None:
                return
            await write_frame(writer, message, timeout_s=self._io_timeout_s, max_frame_bytes=self._max_frame)

    async def _heartbeats(self) -> None:
        assert self._worker is not None
        while True:
            w = self._worker
            self._send(
                frame(
                    Kind.HEARTBEAT, free=w.total_slots - w.busy_slots, draining=w.draining, runs=self.claims()
                )
            )
            await asyncio.sleep(self._heartbeat_s)

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        assert self._worker is not None
        worker = self._worker
        # The master may stay silent for long: reads wait, writes carry the deadlines.
        while True:
            m = await read_frame(reader, timeout_s=3600 * 24, max_frame_bytes=self._max_frame)
            if m is None:
                raise ConnectionError("the master closed the connection")
            kind = kind_of(m)
            if kind is Kind.OFFER:
                assignment = assignment_from_wire(m)
                if assignment.fence.term < self.max_term:
                    reply = OfferReply(
                        OfferVerdict.NAK, f"term {assignment.fence.term} is older than {self.max_term}"
                    )
                else:
                    reply = worker.offer(assignment, assignment.spec.get("dag", {}).get("labels", ()))
                self._send(
                    frame(
                        Kind.OFFER_REPLY,
                        field(m, "id", int),
                        verdict=reply.verdict.value,
                        reason=reply.reason,
                    )
                )
            elif kind is Kind.REPORT_ACK:
                key = field(m, "id", int)
                if key:
                    self._outbox.ack(key)
                if m.get("fenced"):
                    fence = _fence_of(m)
                    worker.abandon(str(m.get("run")), "the master rejected its report (stale fence)", fence)
            elif kind is Kind.LOG_ACK:
                batch = self._logs.pop(field(m, "id", int), None)
                if batch is not None:
                    self._log_bytes -= len(batch["data"])
                    if m.get("fenced"):
                        fence = Fence(batch["term"], batch["epoch"])
                        worker.abandon(batch["run"], "the master refused its log batch (stale fence)", fence)
            elif kind is Kind.CANCEL:
                worker.cancel(field(m, "run", str))
            elif kind is Kind.ABANDON:
                for claim in _abandoned(m):
                    worker.abandon(claim[0], "the master gave the run to another driver", claim[1])
            elif kind is Kind.PERMIT_GRANT:
                fut = self._permit_waiters.get(field(m, "id", int))
                if fut is not None and not fut.done():
                    fut.set_result(None)
                else:  # nobody waits any more: give it back
                    self._send(frame(Kind.PERMIT_FREE))
            elif kind is Kind.REFUSED:
                self._refused(m, "the master")
                raise ConnectionError(str(m.get("reason")))
            else:
                raise ProtocolError(f"unexpected message {kind.value!r} from the master")


def _fence_of(m: dict[str, Any]) -> Fence | None:
    """The fence an acknowledgement names, if it names one."""
    term, epoch = m.get("term"), m.get("epoch")
    if isinstance(term, int) and isinstance(epoch, int):
        return Fence(term, epoch)
    return None


def _abandoned(m: dict[str, Any]) -> list[tuple[str, Fence | None]]:
    """The runs an ABANDON names, each with the fence it was claimed under when the master
    says (only the driver holding that fence stops; a newer one of the same run goes on)."""
    claims = m.get("claims")
    if isinstance(claims, list):
        return [
            (str(c.get("run")), _fence_of(c))
            for c in claims
            if isinstance(c, dict) and isinstance(c.get("run"), str)
        ]
    return [(str(run_id), None) for run_id in m.get("runs") or ()]
