"""CANCEL carries why the run was cancelled (who, or the run timeout) as an optional field:
a frame without it is the old frame, and an old frame decodes with no reason."""

from __future__ import annotations

from kiok.protocol.codec import decode, encode
from kiok.protocol.framing import encode_frame
from kiok.protocol.to_worker import Cancel


def test_a_cancel_with_a_reason_round_trips_and_one_without_is_unchanged() -> None:
    named = Cancel("r1", "cancelled by alice: the run was cancelled")
    wire = encode(named)
    assert wire["reason"] == "cancelled by alice: the run was cancelled"
    assert decode(wire) == named
    assert "reason" not in encode(Cancel("r1"))
    assert encode_frame(encode(Cancel("r1", None))) == encode_frame(encode(Cancel("r1")))
    assert decode({"v": 1, "t": "cancel", "run": "r1"}) == Cancel("r1")
