"""How an archived job-log segment is named and encrypted in the object store.

A *segment* is the byte range ``[start, end)`` of one (run, task) log, copied by the leader
to one object. Its key names the range: ``<run>/<task>/<start>-<end>`` (16 hex digits each).
Job logs are append-only and every master holds the same bytes at the same offsets, so a key
determines its content: a re-flush after a leader failover, or a deposed leader's late
upload, writes the very bytes already there. An object whose ``ArchiveLogs`` never committed
is never read (reads follow committed segment records only) and goes with its run.

Objects are encrypted with the ``joblog-encryption`` data key in fixed frames of
``FRAME_BYTES`` plaintext, each an AES-GCM value bound to the object key, its index and
whether it is the last frame: a read of any byte range fetches and decrypts only the frames
it needs, and a truncated, reordered or swapped object does not decrypt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag

from kiok.errors import KiokError
from kiok.security.kms import Cipher
from kiok.store.objects import ObjectStore

FRAME_BYTES = 64 * 1024


class ArchiveCorrupt(KiokError):
    """An archived object does not decrypt (wrong key, truncated, tampered). A server-side
    data problem, not the client's: it stays a 500 (not 502, which clients take for a
    passing gateway failure worth retrying: reading again gets the same bytes)."""

    code = "archive_corrupt"


@dataclass(frozen=True)
class Segment:
    run_id: str
    task_id: str
    start: int
    end: int

    @property
    def key(self) -> str:
        return segment_key(self.run_id, self.task_id, self.start, self.end)


def segment_key(run_id: str, task_id: str, start: int, end: int) -> str:
    return f"{run_prefix(run_id)}{task_id}/{start:016x}-{end:016x}"


#: A key ``segment_key`` makes (anything else under the prefix is not kiok's to delete).
_SEGMENT_KEY = re.compile(r"([^/]+)/([^/]+)/([0-9a-f]{16})-([0-9a-f]{16})")


def parse_segment_key(key: str) -> Segment | None:
    """The segment a key names; None for a key kiok does not make."""
    found = _SEGMENT_KEY.fullmatch(key)
    if found is None:
        return None
    run_id, task_id, start, end = found.groups()
    seg = Segment(run_id, task_id, int(start, 16), int(end, 16))
    return seg if seg.start < seg.end else None


@dataclass
class OrphanPlan:
    """Orphaned runs' objects (``orphan_plan``)."""

    #: run id -> the keys of its objects, each run unknown to the state and all its objects
    #: older than the grace.
    runs: dict[str, list[str]] = field(default_factory=dict)
    #: Unknown runs left for a later pass: an object of theirs is younger than the grace.
    young: int = 0


def orphan_plan(
    objects: Iterable[tuple[str, int]], known: Callable[[str], bool], now_ms: int, grace_ms: int
) -> OrphanPlan:
    """Of ``objects`` (key, last-modified ms), the segment objects of runs ``known`` says the
    state does not have, grouped by run; a run whose newest object is younger than
    ``grace_ms`` is left (counted in ``young``). Keys kiok does not make are never included."""
    groups: dict[str, list[tuple[str, int]]] = {}
    for key, modified_ms in objects:
        seg = parse_segment_key(key)
        if seg is not None:
            groups.setdefault(seg.run_id, []).append((key, modified_ms))
    plan = OrphanPlan()
    for run_id, members in sorted(groups.items()):
        if known(run_id):
            continue
        if now_ms - max(modified for _, modified in members) < grace_ms:
            plan.young += 1
            continue
        plan.runs[run_id] = sorted(key for key, _ in members)
    return plan


def run_prefix(run_id: str) -> str:
    """Every object of a run's logs is under this prefix (retention deletes it whole)."""
    return f"{run_id}/"


def _aad(key: str, index: int, last: bool) -> bytes:
    return f"kiok-joblog\x00{key}\x00{index}\x00{'last' if last else 'more'}".encode()


def frame_overhead(cipher: Cipher) -> int:
    """Bytes an encrypted frame adds to its plaintext (header, nonce, tag)."""
    return len(cipher.encrypt(b"", b""))


def encrypt_frames(cipher: Cipher, key: str, length: int, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The encrypted object of a segment of ``length`` bytes given as ``chunks``."""
    frames = max(1, -(-length // FRAME_BYTES))
    buf = bytearray()
    index = 0
    seen = 0
    for chunk in chunks:
        buf += chunk
        seen += len(chunk)
        while len(buf) >= FRAME_BYTES and index < frames - 1:
            yield cipher.encrypt(bytes(buf[:FRAME_BYTES]), _aad(key, index, False))
            del buf[:FRAME_BYTES]
            index += 1
    if seen != length or len(buf) > FRAME_BYTES:
        raise KiokError(f"segment {key}: expected {length} bytes, got {seen}")
    yield cipher.encrypt(bytes(buf), _aad(key, index, True))


def read_range(store: ObjectStore, cipher: Cipher, seg: Segment, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of the log (absolute offsets within ``seg``) from its object."""
    start, end = max(start, seg.start), min(end, seg.end)
    if end <= start:
        return b""
    length = seg.end - seg.start
    frames = max(1, -(-length // FRAME_BYTES))
    first, last = (start - seg.start) // FRAME_BYTES, (end - 1 - seg.start) // FRAME_BYTES
    size = FRAME_BYTES + frame_overhead(cipher)
    blob = store.get_range(seg.key, first * size, (last + 1) * size)
    out = bytearray()
    for i in range(first, last + 1):
        part = blob[(i - first) * size : (i - first + 1) * size]
        try:
            out += cipher.decrypt(part, _aad(seg.key, i, i == frames - 1))
        except (InvalidTag, KiokError, ValueError):
            raise ArchiveCorrupt(
                f"the archived log {seg.run_id}/{seg.task_id}, bytes {seg.start}-{seg.end}, fails "
                f"authentication ({store.where(seg.key)}, frame {i}: altered, truncated, or encrypted "
                "with a key this cluster does not have); it cannot be served"
            ) from None
    skip = start - seg.start - first * FRAME_BYTES
    return bytes(out[skip : skip + end - start])
