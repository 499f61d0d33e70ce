"""The worker's outbox: what ``put`` returned for is on disk until acknowledged, in order,
across a new Outbox on the same directory (a restarted worker)."""

from __future__ import annotations

import stat
from pathlib import Path

from kiok.worker.outbox import Outbox


def test_put_survives_reopen_in_order_until_acked(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    keys = [box.put({"run": "r", "n": i}) for i in range(3)]
    box.ack(keys[1])
    again = Outbox(tmp_path / "outbox")  # as after kill -9 and restart
    assert [(k, r["n"]) for k, r in again.pending()] == [(keys[0], 0), (keys[2], 2)]
    assert again.put({"run": "r", "n": 3}) > keys[2]  # keys keep growing after a restart
    again.ack(keys[0])
    again.ack(keys[0])  # acknowledging twice is harmless
    assert [r["n"] for _, r in again.pending()] == [2, 3]
    assert stat.S_IMODE((tmp_path / "outbox").stat().st_mode) == 0o700


def test_junk_in_the_directory_is_dropped(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    (tmp_path / "outbox" / "0000000000000099.rep").write_bytes(b"\xc1")
    key = box.put({"run": "r"})
    assert [k for k, _ in box.pending()] == [key]
