"""Snapshot install: how long a fresh master takes to receive a large state from the leader.

    .venv/bin/python -m bench.snapshot_install --data-dir DIR [--work-dir /tmp]

``DIR`` is a stopped master's data dir (``bench/history.py --keep`` leaves one with a
million runs). Three PySyncObj nodes run in this process on 127.0.0.1, configured as a kiok
master configures its replica (password, ticks, batch sizes), with kiok's snapshot stream
(``kiok.store.snapshot``) as their serializer:

1. node A holds ``DIR``'s state and job-log stores; A and B form the quorum, A leads;
   A's log is compacted: ``snapshot.write`` of both stores (timed: *write*);
2. node C starts with empty stores and is sent the snapshot by PySyncObj (pickled, zlib'd
   and Fernet-encrypted 64 KiB chunks over TCP, written to a file on C), then installs it
   with ``snapshot.read`` (timed: *install*); *total* is from C's start to its stores
   holding the state, which is what a joining master waits before it can apply entries.

With ``--fetch``, the way masters carry a snapshot now (``kiok.store.snapshot_ref``): A
writes the file onto its shelf and a reference (*write*), C fetches it from A's
``GET /raft/snapshots/{digest}`` (the master's own route and ``HttpSnapshotFetch``, under
uvicorn on 127.0.0.1; *carry*) and installs it (*install*); *total* is the three, what a
master that was down waits for before it applies entries again (plus one Raft round).

``--synthetic-mb N`` builds the source instead of reading ``--data-dir``: N MB of random
bytes (incompressible, like ciphertext), half in 32 KiB job-log values, half in 500-byte
state values (~1,000 records per MB: the install's cost is per record).

One JSON line per run on stdout and in bench/results/snapshot_install.jsonl. The source
store gets one extra key (where this bench records node A's applied index).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import uvicorn
from fastapi import FastAPI
from pysyncobj import SyncObj, SyncObjConf, replicated

from bench.jsonl import append_result
from kiok.master import http_errors
from kiok.master.api import raft_snapshots
from kiok.store import keys as k
from kiok.store import snapshot, snapshot_ref
from kiok.store.joblog import APPLIED as JOBLOG_APPLIED
from kiok.store.joblog import REPLICATION as JOBLOG_REPLICATION
from kiok.store.joblog import SPACES as JOBLOG_SPACES
from kiok.store.kv import RocksKV

RESULTS = Path(__file__).parent / "results" / "snapshot_install.jsonl"
#: Where node A's applied index is kept in the source store (not the real key: the store
#: stays a standalone one).
BENCH_APPLIED = (k.KMS, b"bench/snapshot-applied")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


class Node(SyncObj):  # type: ignore[misc]
    def __init__(self, me: str, others: list[str], conf: SyncObjConf) -> None:
        super().__init__(me, others, conf)

    @replicated  # type: ignore[untyped-decorator]
    def noop(self) -> None:
        pass


class Stores:
    """One node's stores, and the serializer/deserializer pair kiok gives PySyncObj."""

    def __init__(self, data: Path, applied: tuple[str, bytes]) -> None:
        self.state = RocksKV(data / "state", k.SPACES)
        self.joblog = RocksKV(data / "joblog", JOBLOG_SPACES)
        self.parts = [
            snapshot.Part("state", self.state, k.SPACES, applied),
            snapshot.Part("joblog", self.joblog, JOBLOG_SPACES, (JOBLOG_REPLICATION, JOBLOG_APPLIED)),
        ]
        self.timings: dict[str, float] = {}
        self.installed = threading.Event()

    def write(self, filename: str, raft_data: Any) -> None:
        last, prev, cluster = raft_data
        t0 = time.monotonic()
        header = {"last": list(last), "prev": list(prev), "cluster": sorted(str(n.id) for n in cluster)}
        snapshot.write(Path(filename), self.parts, header)
        self.timings["write_s"] = time.monotonic() - t0

    def read(self, filename: str) -> tuple[Any, Any, Any]:
        t0 = time.monotonic()
        meta = snapshot.read(Path(filename), self.parts)
        self.timings["install_s"] = time.monotonic() - t0
        if meta.restored:
            self.installed.set()
        header = meta.header
        return tuple(header["last"]), tuple(header["prev"]), header["cluster"]

    def close(self) -> None:
        self.state.close()
        self.joblog.close()


def conf(stores: Stores, dump: Path, *, may_lead: bool) -> SyncObjConf:
    """As ``kiok.store.replicated`` configures a master's replica; B never campaigns first."""
    timeout = (1.0, 1.5) if may_lead else (10.0, 12.0)
    return SyncObjConf(
        fullDumpFile=str(dump),
        serializer=stores.write,
        deserializer=stores.read,
        useFork=False,
        password="snapshot-bench-password",
        autoTickPeriod=0.005,
        appendEntriesUseBatch=False,
        appendEntriesPeriod=0.05,
        raftMinTimeout=timeout[0],
        raftMaxTimeout=timeout[1],
        connectionRetryTime=0.5,
        connectionTimeout=max(1.5, timeout[1]),  # PySyncObj wants it >= the election timeout
        logCompactionMinEntries=10**9,
        logCompactionMinTime=10**9,
        dynamicMembershipChange=False,
    )


def wait(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def emit(record: dict[str, Any]) -> None:
    append_result(RESULTS, record)


def local(data_dir: Path, work: Path, label: str) -> None:
    """The two ends of an install without the transfer: the leader writing the stream, a
    fresh master's empty stores reading it."""
    a = Stores(data_dir, BENCH_APPLIED)
    c = Stores(work / "c", (k.KMS, k.RAFT_APPLIED.encode()))
    try:
        a.state.write([(*BENCH_APPLIED, str(10**6).encode())], sync=True)
        size = sum(p.stat().st_size for d in ("state", "joblog") for p in (data_dir / d).rglob("*"))
        a.write(str(work / "snapshot"), ((1, 1), (1, 1), []))
        c.read(str(work / "snapshot"))
        assert c.installed.is_set()
        emit(
            {
                "bench": "snapshot_install",
                "mode": "local (no transfer)",
                "label": label,
                "source_store_mb": round(size / 2**20),
                "snapshot_mb": round((work / "snapshot").stat().st_size / 2**20),
                "write_s": round(a.timings["write_s"], 1),
                "install_s": round(c.timings["install_s"], 1),
                "peak_rss_mb": round(rss_mb()),
            }
        )
    finally:
        a.close()
        c.close()


def synthetic(root: Path, mb: int) -> Path:
    """A data dir with ``mb`` MB of random job-log values and ~700 small state keys per MB."""
    stores = Stores(root, BENCH_APPLIED)
    try:
        for i in range(mb * 16):
            stores.joblog.write(
                [(JOBLOG_SPACES[0], f"log/{i:08d}".encode(), os.urandom(1 << 16))], sync=False
            )
        for i in range(0, mb * 700, 1000):
            rows = [(k.META, f"run/{j:09d}".encode(), os.urandom(120)) for j in range(i, i + 1000)]
            stores.state.write(rows, sync=False)
    finally:
        stores.close()
    return root


def fetch(data_dir: Path, work: Path, label: str) -> None:
    """Write, carry over HTTP and install, as masters now do (``--fetch``)."""
    a = Stores(data_dir, BENCH_APPLIED)
    c = Stores(work / "c", (k.KMS, k.RAFT_APPLIED.encode()))
    token = "bench-service-token"
    shelf = snapshot_ref.Shelf(work / "a-shelf")
    app = FastAPI()
    http_errors.install(app)
    app.include_router(raft_snapshots.router)
    app.state.node = SimpleNamespace(
        accepts_service_token=lambda t: t == token, raft=SimpleNamespace(shelf=shelf)
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    carry: list[float] = []
    rss_before = rss_mb()
    http = raft_snapshots.HttpSnapshotFetch(lambda: token, None)

    def timed(ref: snapshot_ref.SnapshotRef, dest: Path) -> None:
        t0 = time.monotonic()
        http(ref, dest)
        carry.append(time.monotonic() - t0)

    try:
        wait(lambda: server.started, 30, "the HTTP server")
        a.state.write([(*BENCH_APPLIED, str(10**6).encode())], sync=True)
        size = sum(p.stat().st_size for d in ("state", "joblog") for p in (data_dir / d).rglob("*"))
        writer = snapshot_ref.RefSnapshots(shelf, lambda: f"http://127.0.0.1:{port}", timed, lambda s: False)
        reader = snapshot_ref.RefSnapshots(
            snapshot_ref.Shelf(work / "c-shelf"), lambda: "", timed, lambda s: False
        )
        t0 = time.monotonic()
        ref = writer.write(work / "a.ref", a.parts, {"last": [b"", 1, 1], "prev": [b"", 1, 1], "cluster": []})
        write_s = time.monotonic() - t0
        t1 = time.monotonic()
        assert reader.read(work / "a.ref", c.parts).restored
        read_s = time.monotonic() - t1
        emit(
            {
                "bench": "snapshot_install",
                "mode": "fetch (reference through Raft, file over HTTP)",
                "label": label,
                "source_store_mb": round(size / 2**20),
                "snapshot_mb": round(ref.size / 2**20),
                "write_s": round(write_s, 1),
                "carry_s": round(carry[0], 1),
                "carry_mb_per_s": round(ref.size / 2**20 / carry[0]),
                "install_s": round(read_s - carry[0], 1),
                "total_s": round(write_s + read_s, 1),
                "peak_rss_mb": round(rss_mb()),
                "peak_rss_before_mb": round(rss_before),
                "loadavg": round(os.getloadavg()[0], 1),
            }
        )
    finally:
        server.should_exit = True
        thread.join(10)
        a.close()
        c.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, help="a stopped master's data dir")
    parser.add_argument("--synthetic-mb", type=int, help="build a synthetic source of this many MB instead")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--label", default="", help="recorded with the result (e.g. the history size)")
    parser.add_argument(
        "--local", action="store_true", help="only snapshot.write and snapshot.read, no PySyncObj transfer"
    )
    parser.add_argument("--fetch", action="store_true", help="carry the file over HTTP, as masters do now")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kiok-snapshot-", dir=args.work_dir))
    if args.synthetic_mb:
        args.data_dir = synthetic(work / "source", args.synthetic_mb)
    elif args.data_dir is None:
        parser.error("--data-dir or --synthetic-mb is required")
    if args.fetch:
        try:
            fetch(args.data_dir, work, args.label)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    if args.local:
        try:
            local(args.data_dir, work, args.label)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    ports = [free_port() for _ in range(3)]
    addr = [f"127.0.0.1:{p}" for p in ports]
    (work / "b").mkdir()
    (work / "c").mkdir()
    a = Stores(args.data_dir, BENCH_APPLIED)
    b = Stores(work / "b", (k.KMS, k.RAFT_APPLIED.encode()))
    c = Stores(work / "c", (k.KMS, k.RAFT_APPLIED.encode()))
    nodes: list[Node] = []
    try:
        a.state.write([(*BENCH_APPLIED, str(10**6).encode())], sync=True)
        size = sum(p.stat().st_size for d in ("state", "joblog") for p in (args.data_dir / d).rglob("*"))
        na = Node(addr[0], [addr[1], addr[2]], conf(a, work / "a.snapshot", may_lead=True))
        nb = Node(addr[1], [addr[0], addr[2]], conf(b, work / "b.snapshot", may_lead=False))
        nodes += [na, nb]
        wait(lambda: na._isLeader(), 60, "node A leading")
        for _ in range(5):
            na.noop(sync=True, timeout=30)
        t0 = time.monotonic()
        na.forceLogCompaction()
        wait(lambda: "write_s" in a.timings and (work / "a.snapshot").exists(), 3600, "A's snapshot written")
        wait(lambda: na.getStatus()["log_len"] <= 2, 600, "A's log compacted")
        compacted_s = time.monotonic() - t0
        snap_mb = (work / "a.snapshot").stat().st_size / 2**20
        t0 = time.monotonic()
        nc = Node(addr[2], [addr[0], addr[1]], conf(c, work / "c.snapshot", may_lead=False))
        nodes.append(nc)
        c.installed.wait(3600)
        total_s = time.monotonic() - t0
        wait(lambda: nc.getStatus()["commit_idx"] >= na.getStatus()["commit_idx"], 600, "C caught up")
        caught_s = time.monotonic() - t0
        record = {
            "bench": "snapshot_install",
            "label": args.label,
            "source_store_mb": round(size / 2**20),
            "snapshot_mb": round(snap_mb),
            "write_s": round(a.timings["write_s"], 1),
            "compaction_s": round(compacted_s, 1),
            "transfer_s": round(total_s - c.timings["install_s"], 1),
            "install_s": round(c.timings["install_s"], 1),
            "join_to_installed_s": round(total_s, 1),
            "join_to_caught_up_s": round(caught_s, 1),
            "bench_process_peak_rss_mb": round(rss_mb()),
        }
        emit(record)
    finally:
        for node in nodes:
            node.destroy()
        for stores in (a, b, c):
            stores.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
