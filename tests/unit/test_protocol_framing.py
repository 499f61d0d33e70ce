"""Framing of the internal protocol: golden bytes, limits, garbage, truncation, deadlines."""

from __future__ import annotations

import asyncio
import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiok.errors import ProtocolError
from kiok.protocol.framing import Silent, decode_body, encode_frame, read_frame


def reader_with(data: bytes, *, eof: bool = True) -> asyncio.StreamReader:
    r = asyncio.StreamReader()
    r.feed_data(data)
    if eof:
        r.feed_eof()
    return r


def test_golden_bytes() -> None:
    # A 4-byte big-endian length, then the msgpack map: pinned so the wire cannot drift.
    assert encode_frame({"v": 1, "t": "ping", "id": 7}) == bytes.fromhex(
        "0000000f83a17601a174a470696e67a2696407"
    )


async def test_round_trip_and_clean_eof() -> None:
    r = reader_with(encode_frame({"v": 1, "t": "a", "id": 1}) + encode_frame({"v": 1, "t": "b", "id": 2}))
    assert (await read_frame(r, timeout_s=1))["t"] == "a"  # type: ignore[index]
    assert (await read_frame(r, timeout_s=1))["t"] == "b"  # type: ignore[index]
    assert await read_frame(r, timeout_s=1) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", "header"),
        (b"\x00\x00\x00\x10abc", "truncated"),
        (b"\x7f\xff\xff\xff", "exceeds"),
        (b"\x00\x00\x00\x03\xc1\xc1\xc1", "undecodable"),
        (b"\x00\x00\x00\x01\x05", "map"),
    ],
)
async def test_bad_frames_raise_protocol_error(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        await read_frame(reader_with(data), timeout_s=1, max_frame_bytes=1 << 20)


async def test_a_stalled_peer_hits_the_deadline() -> None:
    with pytest.raises(ProtocolError, match="within"):
        await read_frame(reader_with(b"\x00\x00\x00\x10ab", eof=False), timeout_s=0.05)


@given(st.binary(max_size=200))
def test_garbage_never_raises_anything_but_protocol_error(body: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_body(body)


def test_oversized_outgoing_frames_are_refused() -> None:
    with pytest.raises(ProtocolError):
        encode_frame({"t": "x", "blob": b"0" * 100}, max_frame_bytes=50)
    assert msgpack.unpackb(encode_frame({"t": "x"})[4:]) == {"t": "x"}


async def test_a_large_frame_that_keeps_coming_is_not_silence_once_it_has_begun() -> None:
    """A frame arriving in ten pieces 0.05 s apart, read with a 0.2 s deadline: as a whole it
    takes longer than the deadline (a hello, not authenticated yet, is refused), read with
    ``progress`` each piece comes in time (a large offer on a slow link is no silent master)."""
    frame = encode_frame({"v": 1, "t": "offer", "id": 1, "blob": b"x" * 10_000})
    loop = asyncio.get_running_loop()

    def trickled() -> asyncio.StreamReader:
        reader = asyncio.StreamReader()
        reader.feed_data(frame[:4])
        pieces = [frame[4 + i * 1000 : 4 + (i + 1) * 1000] for i in range((len(frame) - 4 + 999) // 1000)]
        for i, piece in enumerate(pieces):
            loop.call_later(0.05 * (i + 1), reader.feed_data, piece)
        return reader

    message = await read_frame(trickled(), timeout_s=0.2, progress=True)
    assert message is not None and message["blob"] == b"x" * 10_000
    with pytest.raises(Silent, match=r"frame body not received within 0\.2s"):
        await read_frame(trickled(), timeout_s=0.2)
