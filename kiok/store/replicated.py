"""The replicated command log: the typed commands of ``LocalCommandLog``, committed through
Raft (PySyncObj) and then applied by the same ``apply()`` on every master, in log order.

- Only the leader accepts proposals (a follower's API forwards writes to the leader; the
  rare proposal a follower makes itself, such as announcing its address, is relayed by
  PySyncObj). Proposals made in the same event-loop turn travel as one Raft entry, so a
  burst of task reports costs one append, one replication round and one store write; as
  several when they would make an entry over ``ENTRY_BYTES``, and a single command over it
  is refused with PayloadTooLarge (PySyncObj cannot carry such an entry).
- A proposal is answered once a quorum holds its entry and this master has applied it:
  an acknowledged write survives kill -9 of any minority of masters.
- Entries are AES-GCM encrypted with a key derived from the master key before they reach
  PySyncObj, so its journal and its traffic hold no plaintext; Raft messages are
  authenticated with another key derived from the master key.
- Each applied entry records its index in the store in the same atomic write, so replaying
  the journal after a restart skips what the store already has. Job-log chunks
  (``AppendLogs``) go to the job-log store first, under its own applied index, then the
  state store: a crash between the two replays the entry without appending twice.
- Snapshots (log compaction, catching up a master that was down too long) are a stream of
  both stores' raw, still encrypted, key-values (``kiok.store.snapshot``) — never pickled
  Python objects. With ``snapshot_url`` set (a master's admin URL), PySyncObj keeps and
  carries only a reference to the file (``kiok.store.snapshot_ref``); a master that is
  behind fetches the file from the master that wrote it (``fetch_snapshot``, over HTTP,
  checked against its digest), then installs it, all on the Raft thread. A snapshot is
  written from a view of the stores pinned on the Raft thread, by another thread
  (``kiok.store.snapshot_writer``): this master keeps answering Raft messages meanwhile.
- An entry carrying a ``RestoreBackup`` first has ``on_restore`` swap this master's stores
  for the backup (it returns once done, and blocks while the backup cannot be read: this
  master then applies nothing rather than diverge), then its commands are applied on the
  restored state as usual, and the log is compacted at once: a master that missed the entry
  installs a snapshot of the restored state instead of needing the backup.

PySyncObj is thread-based: it applies entries on its tick thread, where ``on_applied`` is
called synchronously (the keyring must change before the next entry is written); answers
and effects are handed to the event loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import hashlib
import ipaddress
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgpack
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pysyncobj import SyncObj, SyncObjConf, replicated  # type: ignore[import-untyped]
from pysyncobj.config import FAIL_REASON  # type: ignore[import-untyped]

from kiok.config import ID
from kiok.errors import InvalidInput, KiokError, NotLeader, NotReady, PayloadTooLarge, StoreUnavailable
from kiok.store import commands as c
from kiok.store import keys as k
from kiok.store import snapshot, snapshot_ref
from kiok.store.commandlog import AppliedBatch, Listener, TurnBatcher, apply_batch, notify, settle
from kiok.store.effects import Effects
from kiok.store.joblog import APPLIED as JOBLOG_APPLIED
from kiok.store.joblog import REPLICATION as JOBLOG_REPLICATION
from kiok.store.joblog import SPACES as JOBLOG_SPACES
from kiok.store.joblog import JobLogStore
from kiok.store.kv import KVStore, RocksKV
from kiok.store.snapshot_writer import SnapshotWriter
from kiok.store.txn import decode as decode_record

log = logging.getLogger(__name__)

_NONCE = 12
_AAD = b"kiok-raft-entry"
#: Entries up to this size travel to followers whole. PySyncObj splits a larger one into
#: chunks of this size, but decides which chunk is the last by the command's length, not
#: its pickle's (protocol 2 makes random bytes ~1.5 times longer): from about twice this
#: size, a follower gets a truncated entry and fails on it at every tick, for good (seen
#: with 1 MiB job-log batches and its default 64 KiB). Also the most a catch-up message
#: holds: PySyncObj assembles a message with ``+=`` per ``recv``, quadratic in its size, so
#: this stays small and each ``recv`` takes up to ``_RECV_BYTES``.
_MESSAGE_BYTES = 4 << 20
_RECV_BYTES = 1 << 20
#: The most an entry's body (its commands, msgpack) may hold, so that no entry takes that
#: broken path: PySyncObj compares with ``_MESSAGE_BYTES`` the pickle (protocol 2) of the
#: encrypted body, in which every byte from 0x80 takes two: up to twice the body, plus a
#: little. Commands proposed together are split across entries to fit; a single command
#: over it (once compressed, see ``_COMPRESS_BYTES``) is refused before it is proposed
#: (PayloadTooLarge, 413). Carrying it in fragments reassembled at apply would lift the
#: limit, at the price of partial commands kept in the stores (and snapshots) across
#: entries, leader changes and restarts: not worth it for writes this size (a DAG document
#: of several MiB of incompressible text).
ENTRY_BYTES = _MESSAGE_BYTES // 2 - (64 << 10)
#: A command whose encoding is longer travels zlib-compressed (level 1) in its entry, as a
#: msgpack ``bin`` where commands are maps. A DAG registration carries the document and its
#: compiled spec, which shrink ~10 times: a 10,000-task DAG's 1.5 MB command takes ~150 KB
#: of the log, and ``ENTRY_BYTES`` binds only for incompressible content.
_COMPRESS_BYTES = 64 << 10
#: Room for ``{"c": [...], "l": [master, term]}`` around the commands in a body (map, keys,
#: array headers; a master id has at most 128 characters, a term 9 bytes).
_BODY_HEAD = 16 + 144
#: How often ``wait_applied`` looks at the applied index (one RocksDB read): at first, and
#: at most (doubling in between).
_APPLIED_POLL_S = 0.002
_APPLIED_POLL_MAX_S = 0.05


def _not_committed(error: int) -> NotLeader:
    """Why PySyncObj did not commit a write. Only a leader change leaves its fate open: the
    next leader may commit it all the same."""
    if error == FAIL_REASON.LEADER_CHANGED:
        return NotLeader.leader_changed()
    why = {
        FAIL_REASON.MISSING_LEADER: "no leader is elected right now",
        FAIL_REASON.NOT_LEADER: "this master is not the leader",
        FAIL_REASON.DISCARDED: "the write was discarded by a new leader",
        FAIL_REASON.QUEUE_FULL: "the replication queue is full",
    }.get(error)
    if why is None:
        return NotLeader(
            f"replication failed (code {error}): it may still take effect, so check before repeating it",
            outcome_unknown=True,
        )
    return NotLeader(why)


@dataclass(frozen=True)
class _InFlight:
    """An entry proposed and not yet answered: its writes' futures, and the term and role
    this master proposed it in."""

    futures: list[asyncio.Future[Any]]
    term: int
    as_leader: bool

    def stranded(self, leading: bool, term: int) -> bool:
        """Its answer may never come: PySyncObj answers an entry only once one is applied at
        its index, so a leader that steps down without a quorum (the same term) or a master
        that has seen a new term may wait for it as long as the partition lasts."""
        return term != self.term or (self.as_leader and not leading)


@dataclass(frozen=True)
class RaftConfig:
    master_id: str
    #: master id -> Raft address (host:port), this master included
    peers: dict[str, str]
    directory: Path
    master_key: str
    election_timeout_s: tuple[float, float] = (0.4, 1.4)
    compaction_entries: int = 5000
    #: Seconds to hold back from campaigning after start (sticky leadership); 0: none.
    defer_s: float = 0.0
    #: Testing aid (``kiok.raft.snapshot.write.pause.ms``): each snapshot write waits this long first.
    snapshot_pause_s: float = 0.0
    #: The address the Raft port binds to (``kiok.master.host``), at this master's Raft port.
    #: PySyncObj would bind every interface.
    bind_host: str = "127.0.0.1"

    @property
    def bind_address(self) -> str:
        return f"{self.bind_host}:{self.address.rsplit(':', 1)[1]}"  # PySyncObj splits at the last ':'

    @property
    def leader_fallback_s(self) -> float:
        """How long a leader that hears from no quorum keeps leading: twice the longest
        election timeout (PySyncObj's default is 30 s, during which a leader left alone with
        a minority takes writes it can never commit instead of answering 503 not_leader)."""
        return 2 * self.election_timeout_s[1]

    @property
    def address(self) -> str:
        return self.peers[self.master_id]

    def master_of(self, address: str | None) -> str | None:
        for mid, addr in self.peers.items():
            if addr == address:
                return mid
        return None


@dataclass(frozen=True)
class ReplicatedStores:
    """What committed entries are applied to: the state store (through its encryption layer,
    and raw for snapshots) and the job-log store (likewise)."""

    state: KVStore
    state_raw: RocksKV
    joblog: JobLogStore
    joblog_raw: RocksKV

    def snapshot_parts(self) -> list[snapshot.Part]:
        return [
            snapshot.Part("state", self.state_raw, k.SPACES, (k.KMS, k.RAFT_APPLIED.encode())),
            snapshot.Part("joblog", self.joblog_raw, JOBLOG_SPACES, (JOBLOG_REPLICATION, JOBLOG_APPLIED)),
        ]


def parse_peers(text: str, master_id: str) -> dict[str, str]:
    """``m1=host:7001,m2=host:7001,...`` -> {id: address}; ValueError naming what is wrong."""
    peers: dict[str, str] = {}
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        mid, sep, addr = item.partition("=")
        host, _, port = addr.rpartition(":")
        if not sep or not mid.strip() or not host or not (port.isascii() and port.isdigit()):
            raise ValueError(f"kiok.master.peers: {item!r} is not id=host:port")
        mid = mid.strip()
        if not ID.match(mid):
            raise ValueError(
                f"kiok.master.peers: {mid[:64]!r} is not a master id (letters, digits and _.-, "
                "starting with a letter or digit, at most 128 characters)"
            )
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"kiok.master.peers: {item!r} names port {int(port)}, not one of 1-65535")
        if mid in peers:
            raise ValueError(f"kiok.master.peers: master id {mid!r} appears twice")
        peers[mid] = f"{host}:{port}"
    if master_id not in peers:
        raise ValueError(f"kiok.master.peers does not name this master ({master_id!r})")
    if len(peers) < 3 or len(peers) % 2 == 0:
        raise ValueError(f"kiok.master.peers: use 3 or 5 masters (an odd number), not {len(peers)}")
    return peers


def unreachable_raft_port(bind_host: str, peers: dict[str, str], master_id: str) -> str | None:
    """Why the other masters could not reach this one's Raft port, bound to ``bind_host``
    (``kiok.master.host``): a loopback address while a peer is on another host. None: fine."""
    if not _is_loopback(bind_host):
        return None
    far = [f"{mid}={addr}" for mid, addr in peers.items() if mid != master_id and not _is_loopback(addr)]
    if not far:
        return None
    return (
        f"kiok.master.host is {bind_host}, a loopback address, and the Raft port binds it too, "
        f"but kiok.master.peers names {', '.join(far)} on other hosts, which could not reach this "
        "master: set kiok.master.host to 0.0.0.0 or this host's address (with TLS, docs/cluster.md)"
    )


def _is_loopback(address: str) -> bool:
    """Whether ``address`` (a host, or host:port) is a loopback one; a name other than
    ``localhost`` is taken as another host's."""
    if address.startswith("["):  # [v6]:port
        host = address[1 : address.find("]")]
    elif address.count(":") == 1:  # host:port
        host = address.rsplit(":", 1)[0]
    else:  # a host alone, or a bare IPv6 address
        host = address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _entries(
    batch: list[tuple[c.Command, asyncio.Future[Any]]], limit: int, lead: Lead | None = None
) -> list[tuple[list[tuple[c.Command, asyncio.Future[Any]]], bytes]]:
    """The batch as log entries, in order, each body (msgpack) at most ``limit`` bytes:
    commands proposed in one turn share an entry while they fit. A command that cannot be
    an entry is refused alone (its future fails; the others go on): one with a value msgpack
    cannot encode (an integer past 64 bits), or one whose encoding alone is over ``limit``
    (PayloadTooLarge, naming the limit)."""
    out: list[tuple[list[tuple[c.Command, asyncio.Future[Any]]], bytes]] = []
    group: list[tuple[c.Command, asyncio.Future[Any]]] = []
    items: list[bytes] = []
    size = _BODY_HEAD
    for cmd, fut in batch:
        try:
            item = _encode(cmd)
        except (TypeError, ValueError, OverflowError) as e:
            _refuse(fut, InvalidInput(f"a value in this request cannot be stored: {e}"))
            continue
        if len(item) + _BODY_HEAD > limit:
            _refuse(
                fut,
                PayloadTooLarge(
                    f"this write is {len(item) / (1 << 20):.1f} MiB encoded and compressed; with several "
                    f"masters one entry of the replicated log holds at most {limit / (1 << 20):.1f} MiB"
                ),
            )
            continue
        if items and size + len(item) > limit:
            out.append((group, _body(items, lead)))
            group, items, size = [], [], _BODY_HEAD
        group.append((cmd, fut))
        items.append(item)
        size += len(item)
    if items:
        out.append((group, _body(items, lead)))
    return out


def _encode(cmd: c.Command) -> bytes:
    """One command as it goes into an entry's list: its msgpack map, or, over
    ``_COMPRESS_BYTES``, a ``bin`` holding that map zlib-compressed."""
    item: bytes = msgpack.packb(cmd.to_wire(), use_bin_type=True)
    if len(item) > _COMPRESS_BYTES:
        item = msgpack.packb(zlib.compress(item, 1), use_bin_type=True)
    return item


#: A master's lead: its id and the Raft term it leads in (as its ``LeaderElected`` records).
Lead = tuple[str, int]
#: ``REQUEST_LEAD`` for a write taken by a master that does not lead by its own record.
NOT_LEADING: Lead = ("", -1)
#: The lead a request was taken under, set by the admin API for the writes a master serves
#: itself (``kiok.master.api.forward``): what it proposes carries that lead, so a request a
#: leader took and proposed only after another leader was elected (a frozen leader waking,
#: catching up meanwhile) takes no effect; None outside requests (the lead applied last).
REQUEST_LEAD: contextvars.ContextVar[Lead | None] = contextvars.ContextVar("request_lead", default=None)


def _decode(body: bytes) -> tuple[list[c.Command], Lead | None]:
    """The commands of an entry's body (``_body``), compressed ones expanded, and the lead
    they were proposed under (None: a ``LeaderElected``, an entry proposed before any leader
    was recorded, or one written by a kiok before this field)."""
    doc = msgpack.unpackb(body, raw=False)
    cmds = [
        c.from_wire(msgpack.unpackb(zlib.decompress(w), raw=False) if isinstance(w, bytes) else w)
        for w in doc["c"]
    ]
    lead = doc.get("l")
    return cmds, (str(lead[0]), int(lead[1])) if isinstance(lead, list) and len(lead) == 2 else None


def _body(items: list[bytes], lead: Lead | None = None) -> bytes:
    """``{"c": [command, ...], "l": [master, term]}`` from commands already encoded (what
    ``_apply_entry`` reads); ``l`` only for an entry proposed under a lead (``_send``)."""
    packer = msgpack.Packer(use_bin_type=True)
    head: bytes = packer.pack_map_header(1 if lead is None else 2)
    if lead is not None:
        head += packer.pack("l") + packer.pack(list(lead))
    head += packer.pack("c") + packer.pack_array_header(len(items))
    return head + b"".join(items)


def _refuse(fut: asyncio.Future[Any], error: KiokError) -> None:
    if not fut.done():
        fut.set_exception(error)


def apply_entry(state: KVStore, joblog: JobLogStore, cmds: list[c.Command], index: int) -> AppliedBatch:
    """Apply one committed entry (its commands, at Raft ``index``): the state store's writes
    are returned for the caller to write with its index mark; the job-log store takes the
    entry's log chunks and deletions now (both idempotent by index, so a journal replay
    after a crash changes nothing). The replicated-log twin of the simulator applies its
    entries through this same function."""
    applied = apply_batch(state, cmds)
    if applied.effects.log_appends:
        joblog.apply_replicated(index, applied.effects.log_appends)
    if applied.effects.log_deletes:  # idempotent: a replay after a crash deletes nothing more
        joblog.delete_runs(applied.effects.log_deletes)
    if applied.effects.log_archived or applied.effects.archive_forgotten:  # idempotent too
        joblog.apply_archive_effects(applied.effects)
    return applied


def _derive(master_key: str, label: bytes) -> bytes:
    # A fixed salt is fine: the input is a 32+ character secret, not a password to crack.
    return hashlib.pbkdf2_hmac("sha256", master_key.encode(), b"kiok-raft/" + label, 100_000, dklen=32)


class _Replica(SyncObj):  # type: ignore[misc]
    """The PySyncObj node: one replicated method, which hands each entry to its owner."""

    def __init__(self, owner: RaftCommandLog, conf: SyncObjConf, address: str, others: list[str]) -> None:
        self._owner = owner
        super().__init__(address, others, conf)

    @replicated  # type: ignore[untyped-decorator]
    def apply_entry(self, payload: bytes) -> Any:
        with self._owner.ticking_busy():
            return self._owner._apply_entry(payload, self.raftLastApplied + 1)


class RaftCommandLog:
    """``CommandLog`` over Raft; also tells who leads (``is_leader``, ``leader_id``, ``term``)."""

    def __init__(
        self,
        stores: ReplicatedStores,
        config: RaftConfig,
        *,
        on_applied: Callable[[Effects], None],
        on_restored: Callable[[], None],
        on_role_change: Callable[[], None],
        on_restore: Callable[[c.RestoreBackup, int, threading.Event], None] | None = None,
        on_halt: Callable[[str], None] = lambda why: None,
        snapshot_url: Callable[[], str] | None = None,
        fetch_snapshot: snapshot_ref.Fetch | None = None,
        max_batch: int = 512,
    ) -> None:
        """``snapshot_url`` (this master's admin URL) and ``fetch_snapshot``: snapshots travel
        as references and are fetched over HTTP; without them, PySyncObj carries whole files."""
        self._stores = stores
        self._state = stores.state
        self._raw = stores.state_raw
        self.config = config
        self._on_applied = on_applied
        self._on_restored = on_restored
        self._on_role_change = on_role_change
        self._on_restore = on_restore
        #: Set when stopping: a restore waiting for its backup gives up (the entry stays unapplied).
        self._stopping = threading.Event()
        #: Why it stopped applying entries (one written by a newer kiok), told to ``on_halt``.
        self._halted: str | None = None
        self._on_halt = on_halt
        #: Snapshot files this master wrote or fetched (served at ``/raft/snapshots/{digest}``).
        self.shelf = snapshot_ref.Shelf(config.directory / "snapshots")
        self._refs = (
            None
            if snapshot_url is None or fetch_snapshot is None
            else snapshot_ref.RefSnapshots(self.shelf, snapshot_url, fetch_snapshot, self._stopping.wait)
        )
        #: Writes snapshots off the Raft thread (PySyncObj's serializer and its checker).
        self._writer = SnapshotWriter(
            config.directory / "snapshot",
            lambda: snapshot.pin(stores.snapshot_parts()),
            self._write_file,
            pause_s=config.snapshot_pause_s,
            halted=lambda: self._halted,
        )
        self._aead = AESGCM(_derive(config.master_key, b"entries"))
        self._listeners: list[Listener] = []
        self._batcher: TurnBatcher[tuple[c.Command, asyncio.Future[Any]]] = TurnBatcher(self._send, max_batch)
        #: Entries proposed and not answered yet, by proposal number (``_abandon_stranded``).
        self._in_flight: dict[int, _InFlight] = {}
        self._proposals = 0
        #: The lead each command proposed while serving a request was taken under, by future.
        self._request_leads: dict[asyncio.Future[Any], Lead] = {}
        #: Work under way on the tick thread (``ticking_busy``).
        self._tick_busy = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._replica: _Replica | None = None
        self.batches = 0
        self.commands = 0
        #: Times this master saw a new leader elected (a metric: frequent changes are trouble).
        self.leader_changes = 0

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        cfg = self.config
        cfg.directory.mkdir(parents=True, exist_ok=True)
        conf = SyncObjConf(
            journalFile=str(cfg.directory / "journal"),
            fullDumpFile=str(cfg.directory / "snapshot"),  # the SnapshotWriter's path
            serializer=self._writer.serialize,
            serializeChecker=self._writer.check,
            deserializer=self._read_snapshot,
            useFork=False,
            password=_derive(cfg.master_key, b"transport").hex(),
            autoTickPeriod=0.005,
            appendEntriesUseBatch=False,
            appendEntriesPeriod=0.05,
            appendEntriesBatchSizeBytes=_MESSAGE_BYTES,
            recvBufferSize=_RECV_BYTES,
            raftMinTimeout=cfg.election_timeout_s[0],
            raftMaxTimeout=cfg.election_timeout_s[1],
            connectionRetryTime=0.5,
            connectionTimeout=max(1.5, cfg.election_timeout_s[1]),  # PySyncObj: >= the max timeout
            logCompactionMinEntries=cfg.compaction_entries,
            logCompactionMinTime=60,
            onStateChanged=lambda _old, _new: self._to_loop(self._on_role_change),
            dynamicMembershipChange=False,
            bindAddress=cfg.bind_address,
            leaderFallbackTimeout=cfg.leader_fallback_s,
        )
        others = [addr for mid, addr in cfg.peers.items() if mid != cfg.master_id]
        self._replica = _Replica(self, conf, cfg.address, others)
        if cfg.defer_s > 0:
            # PySyncObj has no setting for a one-off delay: push this node's first election
            # deadline back (its tick thread sleeps 0.1 s after start, before reading it).
            self._replica._SyncObj__raftElectionDeadline = time.monotonic() + cfg.defer_s
        self._watch = asyncio.get_running_loop().create_task(self._watch_leader(), name="raft-leader-watch")

    def stop(self) -> None:
        self._stopping.set()
        self._writer.close()  # before the stores close: its thread reads them
        self._watch.cancel()
        if self._replica is not None:
            self._replica.destroy()

    async def _watch_leader(self) -> None:
        """PySyncObj reports state changes, not leader changes seen by a follower: poll."""
        last: tuple[str | None, int] = (None, -1)
        elected = LeaderElections()
        while True:
            now = (self.leader_id, self.term)
            if now != last:
                if elected.see(*now):
                    self.leader_changes += 1
                last = now
                self._on_role_change()
            if self._in_flight:
                self._abandon_stranded()
            await asyncio.sleep(0.05)

    def _abandon_stranded(self) -> None:
        """Answer the writes whose entry may wait for its commit as long as a partition lasts
        (``_InFlight.stranded``) with an outcome-unknown ``NotLeader``: the client hears within
        the step-down time that its write may or may not take effect, rather than nothing until
        its own timeout. PySyncObj's late answer, if one comes, finds the futures done."""
        leading, term = self.is_leader, self.term
        for number, entry in list(self._in_flight.items()):
            if entry.stranded(leading, term):
                del self._in_flight[number]
                for fut in entry.futures:
                    if not fut.done():
                        fut.set_exception(NotLeader.leader_changed())

    # --- leadership ------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self._replica is not None and bool(self._replica._isLeader())

    @property
    def leader_id(self) -> str | None:
        """The leader as this master knows it; None when it knows none. A follower that has
        not heard from its leader for an election timeout knows none: PySyncObj keeps naming
        the last leader until an election, and a follower connected to no other master (a
        minority left alone) never holds one, so it would name a dead leader for good (and
        call itself ready); a frozen leader, too, is no leader once a timeout passes."""
        replica = self._replica
        if replica is None:
            return None
        leader = replica._getLeader()
        if leader is None:
            return None
        if (
            not replica._isLeader()
            and self._tick_busy == 0  # not heard because not listening: no sign of a dead leader
            and replica._SyncObj__raftElectionDeadline < time.monotonic()
        ):
            return None
        return self.config.master_of(leader.id)

    @contextlib.contextmanager
    def ticking_busy(self) -> Iterator[None]:
        """(PySyncObj's tick thread) Work that keeps it from reading the leader's heartbeats
        (an entry's apply, which may fetch a restore's backup; a snapshot's install): the
        election deadline passing meanwhile says nothing about the leader."""
        self._tick_busy += 1
        try:
            yield
        finally:
            self._tick_busy -= 1

    @property
    def term(self) -> int:
        return 0 if self._replica is None else int(self._replica.raftCurrentTerm)

    @property
    def caught_up(self) -> bool:
        """This master has applied what the leader had committed when it joined."""
        return self._replica is not None and bool(self._replica.isReady())

    def status(self) -> dict[str, Any]:
        """Raft's view from this master: per peer, connected and (on the leader) how far
        behind its log is."""
        if self._replica is None:
            return {}
        st = self._replica.getStatus()
        peers: dict[str, dict[str, Any]] = {}
        for mid, addr in self.config.peers.items():
            if mid == self.config.master_id:
                continue
            peers[mid] = {
                "connected": st.get(f"partner_node_status_server_{addr}") == 2,
                "matchIndex": st.get(f"match_idx_server_{addr}"),
            }
        return {
            "commitIndex": st.get("commit_idx"),
            "lastApplied": st.get("last_applied"),
            "term": st.get("raft_term"),
            "hasQuorum": st.get("has_quorum"),
            "peers": peers,
        }

    # --- CommandLog ------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def propose(self, cmd: c.Command) -> Any:
        return await self.propose_nowait(cmd)

    def propose_nowait(self, cmd: c.Command, *, fsync: bool = True) -> asyncio.Future[Any]:
        """Every committed entry is on a quorum's journal: ``fsync`` changes nothing here.
        Proposed while serving a request (``REQUEST_LEAD``), the command carries the lead the
        request was taken under, or is refused at once if it was taken without one."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        taken = REQUEST_LEAD.get()
        if taken is NOT_LEADING:
            fut.set_exception(NotLeader("this master no longer leads: retry"))
            return fut
        if taken is not None:
            self._request_leads[fut] = taken
        self._batcher.add((cmd, fut))
        return fut

    def own_lead(self) -> Lead | None:
        """This master's lead — its id and term — if it leads and its ``LeaderElected`` is the
        last applied; None otherwise (whatever a flag polled a moment ago said)."""
        if not self.is_leader:
            return None
        mine = (self.config.master_id, self.term)
        return mine if self._recorded_lead() == mine else None

    def _send(self, batch: list[tuple[c.Command, asyncio.Future[Any]]]) -> None:
        replica = self._replica
        if replica is None:
            for _, fut in batch:
                fut.set_exception(NotLeader("the replicated log is not started"))
                self._request_leads.pop(fut, None)
            return
        recorded = self._recorded_lead()
        # In order, each run of commands under one lead in its own entries.
        group: list[tuple[c.Command, asyncio.Future[Any]]] = []
        group_lead: Lead | None = None
        for cmd, fut in batch:
            lead = None if isinstance(cmd, c.LeaderElected) else self._request_leads.pop(fut, recorded)
            if group and lead != group_lead:
                self._propose_group(group, group_lead)
                group = []
            group_lead = lead
            group.append((cmd, fut))
        if group:
            self._propose_group(group, group_lead)

    def _propose_group(self, group: list[tuple[c.Command, asyncio.Future[Any]]], lead: Lead | None) -> None:
        for entry, body in _entries(group, ENTRY_BYTES, lead):
            self._propose_entry([fut for _, fut in entry], body)

    # Every entry carries a lead and takes effect only under that same lead
    # (``_outside_its_lead``): the lead a request was taken under (``REQUEST_LEAD``), else the
    # lead its master last saw applied (the last ``LeaderElected``). PySyncObj hands a
    # command queued on a master that is not (or no longer) the leader to the leader, which
    # commits it: a write that a frozen leader took from its socket on waking — leading still,
    # or just stepped down — would otherwise take effect after all, seconds later, though a
    # follower had answered the client 503 and the client, having checked, had sent it again
    # (and had gone on: deleted what it re-created). A follower's own entries (its address)
    # carry the current leader's lead and are committed by it as before; a ``LeaderElected``
    # carries none (it is what moves the lead on).

    def _recorded_lead(self) -> Lead | None:
        """The lead of the last ``LeaderElected`` applied (None: none yet, or a store that
        cannot be read yet: before the keyring)."""
        try:
            raw = self._state.get(k.META, k.LEADER.encode())
            record = decode_record(raw) if raw is not None else None
        except KiokError:
            return None
        if not isinstance(record, dict):
            return None
        return str(record.get("master")), int(record.get("term") or 0)

    def _propose_entry(self, futures: list[asyncio.Future[Any]], body: bytes) -> None:
        assert self._replica is not None
        nonce = os.urandom(_NONCE)
        payload = nonce + self._aead.encrypt(nonce, body, _AAD)
        self._proposals += 1
        number = self._proposals
        self._in_flight[number] = _InFlight(futures, self.term, self.is_leader)

        def committed(outcomes: Any, error: int) -> None:  # on PySyncObj's tick thread
            self._to_loop(self._answer, number, futures, outcomes, error)

        self._replica.apply_entry(payload, callback=committed)

    def _answer(self, number: int, futures: list[asyncio.Future[Any]], outcomes: Any, error: int) -> None:
        self._in_flight.pop(number, None)
        if error != FAIL_REASON.SUCCESS or outcomes is None:
            for fut in futures:
                if not fut.done():
                    fut.set_exception(_not_committed(error))
            return
        for fut, outcome in zip(futures, outcomes, strict=True):
            settle(fut, outcome)

    # --- applying (PySyncObj's tick thread) --------------------------------------------------

    def _apply_entry(self, payload: bytes, index: int) -> list[tuple[Any, BaseException | None]] | None:
        try:
            return self._apply_entry_now(payload, index)
        except StoreUnavailable as e:
            # The stores cannot write (the master stops: ``RocksKV.on_unavailable``): nothing
            # more is applied, and this entry, not marked applied, is applied again on start.
            self._halted = e.message
            return None

    def _apply_entry_now(self, payload: bytes, index: int) -> list[tuple[Any, BaseException | None]] | None:
        if self._halted is not None:
            return None
        if index <= self.applied_index():
            return None  # replaying the journal over a store that already has this entry
        # The index goes in the same atomic batch as the entry's writes; encryption happens
        # in the state layer, so it is written through it (the kms keyspace is stored as is).
        mark = (k.KMS, k.RAFT_APPLIED.encode(), str(index).encode())
        if self._halted is not None:
            return None  # nothing after an entry this version cannot apply: it is not skipped
        try:
            body = self._aead.decrypt(payload[:_NONCE], payload[_NONCE:], _AAD)
            cmds, lead = _decode(body)
        except c.UnknownCommand as e:  # written by a newer kiok: stop rather than diverge
            self._halt(index, e.message)
            return None
        except Exception as e:  # a corrupt entry: skip it everywhere alike, loudly
            log.error("raft entry %d is unreadable (%s); skipped", index, e)
            self._raw.write([mark], sync=False)
            return None
        if lead is not None and self._outside_its_lead(lead):
            self._raw.write([mark], sync=False)
            refused = NotLeader(
                "not done: the master that took this request lost the lead before it was stored "
                "(the next leader has it, without this write): send it again"
            )
            return [(None, refused) for _ in cmds]
        # A restore's record names the entry that carries it (the same index on every master).
        cmds = [replace(cmd, raft_index=index) if isinstance(cmd, c.RestoreBackup) else cmd for cmd in cmds]
        restores = [cmd for cmd in cmds if isinstance(cmd, c.RestoreBackup)]
        if self._on_restore is not None:
            for restore in restores:  # returns once the stores hold the backup (or raises)
                self._on_restore(restore, index, self._stopping)
        applied = apply_entry(self._state, self._stores.joblog, cmds, index)
        try:
            self._state.write([*applied.writes, mark], sync=bool(restores))
        except StoreUnavailable:
            raise
        except KiokError as e:  # e.g. an encrypted keyspace before any keyring: alike everywhere
            log.error("raft entry %d refused: %s", index, e.message)
            self._raw.write([mark], sync=False)
            return [(None, e) for _ in cmds]
        if restores and self._replica is not None:
            self._replica.forceLogCompaction()
        self.batches += 1
        self.commands += len(cmds)
        self._on_applied(applied.effects)
        self._to_loop(notify, self._listeners, applied.effects)
        return applied.outcomes

    def _outside_its_lead(self, lead: Lead) -> bool:
        """Whether an entry proposed under ``lead`` comes after another leader's
        ``LeaderElected`` (alike on every master: the record is replicated state)."""
        return self._recorded_lead() != lead

    def _halt(self, index: int, why: str) -> None:
        """(On the apply thread) Entry ``index`` was written by a newer kiok: applying nothing
        more, and not marking it applied, this master stops (``on_halt``) and applies it once
        it runs a version that knows it. Skipping it, as a corrupt entry is, would leave this
        master's state different from the others' for good."""
        self._halted = (
            f"raft entry {index} was written by a newer kiok ({why}): this master stops; "
            "upgrade it (upgrade followers first, the leader last) and it applies the entry on start"
        )
        log.critical("%s", self._halted)
        self._to_loop(self._on_halt, self._halted)

    def run_on_loop(self, fn: Callable[[], None]) -> None:
        """(On the apply thread) Run ``fn`` on the event loop and wait for it, so that no
        request reads the stores while ``fn`` replaces them (a restore's swap: the event loop
        never waits for this thread, so this cannot deadlock). Raises what ``fn`` raised, or
        NotReady when the master stops first."""
        loop = self._loop
        if loop is None:
            raise NotReady("the replicated log is not started")
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def call() -> None:
            try:
                fn()
            except BaseException as e:  # handed to the waiting thread
                done.set_exception(e)
            else:
                done.set_result(None)

        loop.call_soon_threadsafe(call)
        while True:
            try:
                return done.result(timeout=0.5)
            except concurrent.futures.TimeoutError:
                if self._stopping.is_set() or loop.is_closed():
                    raise NotReady("stopping before the event loop ran the restore") from None

    def applied_index(self) -> int:
        raw = self._raw.get(k.KMS, k.RAFT_APPLIED.encode())
        return 0 if raw is None else int(raw)

    async def wait_applied(self, index: int, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until this master has applied Raft entry ``index``:
        whether it has. A follower learns that an entry is committed from the leader's next
        message, so it applies it a moment after the leader answered the write."""
        deadline = time.monotonic() + timeout_s
        pause = _APPLIED_POLL_S
        while self.applied_index() < index:
            left = deadline - time.monotonic()
            if left <= 0 or self._halted is not None:
                return False
            await asyncio.sleep(min(pause, left))
            pause = min(2 * pause, _APPLIED_POLL_MAX_S)  # a follower far behind is looked at less
        return True

    def _write_file(
        self, pinned: snapshot.Pinned, header: dict[str, Any], cancelled: Callable[[], bool]
    ) -> Callable[[Path], None]:
        """(The snapshot writer's thread) Write the snapshot file of ``pinned``: onto the shelf
        (its reference is what PySyncObj keeps), or whole beside PySyncObj's file."""
        refs = self._refs
        if refs is not None:
            written = refs.write_file(pinned, header, cancelled)

            def publish(path: Path) -> None:
                refs.publish(written, path)

            return publish
        scratch = self.config.directory / "snapshot.writing"
        snapshot.write(scratch, pinned, header, cancelled)
        return lambda path: os.replace(scratch, path)

    def _read_snapshot(self, filename: str) -> tuple[Any, Any, Any]:
        """PySyncObj's deserializer (the Raft thread): at start, this master's own last
        snapshot; later, one the leader sends. An exception leaves the stores untouched:
        PySyncObj logs it and the leader sends its snapshot again."""
        with self.ticking_busy():
            return self._install_snapshot(filename)

    def _install_snapshot(self, filename: str) -> tuple[Any, Any, Any]:
        self._writer.abandon()  # an older snapshot must not replace this one afterwards
        parts = self._stores.snapshot_parts()
        if self._refs is not None:
            meta = self._refs.read(Path(filename), parts)
        else:
            meta = snapshot.read(Path(filename), parts)
        if meta.restored:
            log.info("stores restored from a snapshot at raft index %d", meta.index)
            self._stores.joblog.forget_sizes()
            self._on_restored()
            if self._replica is not None:  # the install took long: no election for heartbeats missed
                deadline = time.monotonic() + self.config.election_timeout_s[1]
                self._replica._SyncObj__raftElectionDeadline = deadline
        header = meta.header
        return tuple(header["last"]), tuple(header["prev"]), header["cluster"]

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed under us: shutting down
                loop.call_soon_threadsafe(fn, *args)


@dataclass
class LeaderElections:
    """Counts the leaders a master sees elected. A follower knows no leader for a while now
    and then (cut off alone past an election timeout, or its tick thread busy): the same
    leader seen again in the same term after that was not elected again, and is not counted."""

    leader: str | None = None
    term: int = -1

    def see(self, leader: str | None, term: int) -> bool:
        """Whether ``leader`` known in ``term`` is a leader elected since the last one seen."""
        if leader is None or (leader == self.leader and term <= self.term):
            return False
        self.leader, self.term = leader, term
        return True
