"""Frames of the internal protocol: a 4-byte big-endian length, then a msgpack map.

Every frame is ``{"v": version, "t": kind, "id": request id, ...}``. Reading is bounded in
size and in time: a frame over ``max_frame_bytes`` or a peer that stalls past the deadline
raises ``ProtocolError`` and the caller closes that one connection; nothing a peer sends
can make a reader allocate more than the limit or wait forever.

The bytes are not the whole cost: one byte of msgpack can stand for an empty map or list
(a Python object of ~60 bytes) and three for an extension object, so a frame within the
limit could make a reader build a thousand MiB and hold its event loop for seconds (every
other connection of the master waits meanwhile). So a frame may hold at most one map or
list per ``_BYTES_PER_CONTAINER`` bytes of the limit (real frames hold one per 20 bytes or
more: a task record, a claim, a task spec are each dozens of bytes) and no extension types
(the protocol never sends any; msgpack timestamps decode as plain floats).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgpack

from kiok.errors import ProtocolError
from kiok.waits import within

_HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
#: A frame of ``n`` bytes at most may build ``n // _BYTES_PER_CONTAINER`` maps and lists.
_BYTES_PER_CONTAINER = 16
#: ...but never fewer than this (a small limit still takes any real message).
_MIN_CONTAINERS = 1024


def max_containers(max_frame_bytes: int) -> int:
    """How many maps and lists a frame read under ``max_frame_bytes`` may hold."""
    return max(_MIN_CONTAINERS, max_frame_bytes // _BYTES_PER_CONTAINER)


class _Refused(Exception):
    """Raised from inside msgpack's hooks to stop a decode at once; never leaves this module."""


class _Budget:
    """Counts the maps and lists one decode builds (msgpack's hooks see each as it is built)."""

    __slots__ = ("left",)

    def __init__(self, containers: int) -> None:
        self.left = containers

    def take(self, value: Any) -> Any:
        self.left -= 1
        if self.left < 0:
            raise _Refused("too many maps and lists")
        return value


def _no_ext(code: int, data: bytes) -> Any:
    raise _Refused("msgpack extension types are not part of the protocol")


def encode_frame(message: dict[str, Any], *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    assert isinstance(body, bytes)
    if len(body) > max_frame_bytes:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds the limit of {max_frame_bytes}")
    return _HEADER.pack(len(body)) + body


def decode_body(body: bytes, *, containers: int | None = None) -> dict[str, Any]:
    """The map a frame's body holds. ``containers``: the most maps and lists it may hold
    (default: those of a frame under ``DEFAULT_MAX_FRAME_BYTES``)."""
    budget = _Budget(max_containers(DEFAULT_MAX_FRAME_BYTES) if containers is None else containers)
    try:
        message = msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            object_hook=budget.take,
            list_hook=budget.take,
            ext_hook=_no_ext,
            timestamp=1,  # a float: never an object costlier than its bytes
        )
    except _Refused as e:
        raise ProtocolError(f"frame refused: {e}") from None
    except Exception as e:  # msgpack raises several unrelated types for garbage
        raise ProtocolError(f"undecodable frame: {type(e).__name__}") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ProtocolError("a frame must be a map with a string 't' (message type)")
    return message


class Silent(ProtocolError):
    """The peer sent no frame (or not all of one) within the deadline: it may be gone or
    frozen without its connection closing, which nothing else would tell."""


async def read_frame(
    reader: asyncio.StreamReader,
    *,
    timeout_s: float,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    progress: bool = False,
) -> dict[str, Any] | None:
    """The next frame, or None at a clean end of stream (EOF between frames). ``timeout_s``
    bounds the wait for the frame to begin, then for its body: as a whole, or with
    ``progress`` for each read of it (a peer that has spoken, on a connection where silence
    means it is gone, may take as long as a large frame takes on a slow link while its bytes
    keep coming; a peer not authenticated yet is given the whole deadline only)."""
    try:
        header = await within(reader.readexactly(_HEADER.size), timeout_s)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise ProtocolError("connection closed inside a frame header") from None
    except TimeoutError:
        raise Silent(f"no frame within {timeout_s:g}s") from None
    (size,) = _HEADER.unpack(header)
    if size > max_frame_bytes:
        raise ProtocolError(f"frame of {size} bytes exceeds the limit of {max_frame_bytes}")
    try:
        if progress:
            body = await _read_progressing(reader, size, timeout_s)
        else:
            body = await within(reader.readexactly(size), timeout_s)
    except asyncio.IncompleteReadError:
        raise ProtocolError("connection closed inside a frame (truncated)") from None
    except TimeoutError:
        raise Silent(f"frame body not received within {timeout_s:g}s") from None
    return decode_body(body, containers=max_containers(max_frame_bytes))


async def _read_progressing(reader: asyncio.StreamReader, size: int, timeout_s: float) -> bytes:
    """``size`` bytes, each read within ``timeout_s`` (most frames: one read)."""
    chunks: list[bytes] = []
    left = size
    while left:
        chunk = await within(reader.read(left), timeout_s)
        if not chunk:
            raise asyncio.IncompleteReadError(b"".join(chunks), size)
        chunks.append(chunk)
        left -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def write_frame(
    writer: asyncio.StreamWriter,
    message: dict[str, Any],
    *,
    timeout_s: float,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> None:
    writer.write(encode_frame(message, max_frame_bytes=max_frame_bytes))
    try:
        await within(writer.drain(), timeout_s)
    except TimeoutError:
        raise ProtocolError(f"peer did not take a frame within {timeout_s:g}s") from None
