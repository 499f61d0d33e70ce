"""Masking in log batches: a secret split across two batches is still masked."""

from __future__ import annotations

from typing import Any

from kiok.protocol.messages import Fence
from kiok.worker.logship import TaskLog
from kiok.worker.masking import Masker


class RecordingLink:
    def __init__(self) -> None:
        self.batches: list[bytes] = []

    def append_log(self, run_id: str, task_id: str, data: bytes, *, final: bool) -> None:
        self.batches.append(data)

    def report_tasks(self, run_id: str, fence: Fence, tasks: dict[str, dict[str, Any]]) -> None: ...

    def release_run(self, run_id: str, fence: Fence, reason: str) -> None: ...

    async def acquire_task_permit(self) -> None: ...

    def release_task_permit(self) -> None: ...


async def test_a_secret_across_a_batch_boundary_is_masked() -> None:
    link = RecordingLink()
    log = TaskLog(
        link,
        "r",
        "t",
        batch_bytes=1 << 20,
        interval_s=60,
        cap_bytes=1 << 20,
        masker=Masker(["TOPSECRET", "ab"]),
    )
    log.write(b"start TOPS")
    log.flush()  # a batch boundary in the middle of the secret
    log.write(b"ECRET end, ab stays\n")
    log.close()
    joined = b"".join(link.batches)
    assert joined == b"start *** end, ab stays\n"  # 'ab' is too short to mask
    assert all(b"TOPSECRET" not in b for b in link.batches)


def test_masker_on_text() -> None:
    m = Masker(["hunter22"])
    assert m.mask_text("login failed for hunter22") == "login failed for ***"
    assert not Masker([]) and Masker([]).mask(b"x") == b"x"
