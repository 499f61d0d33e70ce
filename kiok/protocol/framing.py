"""Frames of the internal protocol: a 4-byte big-endian length, then a msgpack map.

Every frame is ``{"v": version, "t": kind, "id": request id, ...}``. Reading is bounded in
size and in time: a frame over ``max_frame_bytes`` or a peer that stalls past the deadline
raises ``ProtocolError`` and the caller closes that one connection; nothing a peer sends
can make a reader allocate more than the limit or wait forever.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgpack

from kiok.errors import ProtocolError

_HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024


def encode_frame(message: dict[str, Any], *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    assert isinstance(body, bytes)
    if len(body) > max_frame_bytes:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds the limit of {max_frame_bytes}")
    return _HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several unrelated types for garbage
        raise ProtocolError(f"undecodable frame: {type(e).__name__}") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ProtocolError("a frame must be a map with a string 't' (message type)")
    return message


async def read_frame(
    reader: asyncio.StreamReader, *, timeout_s: float, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
) -> dict[str, Any] | None:
    """The next frame, or None at a clean end of stream (EOF between frames)."""
    try:
        header = await asyncio.wait_for(reader.readexactly(_HEADER.size), timeout_s)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise ProtocolError("connection closed inside a frame header") from None
    except TimeoutError:
        raise ProtocolError(f"no frame within {timeout_s:g}s") from None
    (size,) = _HEADER.unpack(header)
    if size > max_frame_bytes:
        raise ProtocolError(f"frame of {size} bytes exceeds the limit of {max_frame_bytes}")
    try:
        body = await asyncio.wait_for(reader.readexactly(size), timeout_s)
    except asyncio.IncompleteReadError:
        raise ProtocolError("connection closed inside a frame (truncated)") from None
    except TimeoutError:
        raise ProtocolError(f"frame body not received within {timeout_s:g}s") from None
    return decode_body(body)


async def write_frame(
    writer: asyncio.StreamWriter,
    message: dict[str, Any],
    *,
    timeout_s: float,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> None:
    writer.write(encode_frame(message, max_frame_bytes=max_frame_bytes))
    try:
        await asyncio.wait_for(writer.drain(), timeout_s)
    except TimeoutError:
        raise ProtocolError(f"peer did not take a frame within {timeout_s:g}s") from None
