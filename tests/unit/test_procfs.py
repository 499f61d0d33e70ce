"""kiok.worker.procfs against this process: a children list longer than one page of /proc
is read whole (one read gave ~680 of 800: processes left out of a stopped spawner's ending)."""

from __future__ import annotations

import os
import signal
import subprocess

from kiok.worker import procfs


def test_a_children_list_longer_than_a_page_is_read_whole() -> None:
    children = [subprocess.Popen(["sleep", "120"]) for _ in range(900)]
    try:
        listed = procfs.children(os.getpid())
        assert len(" ".join(map(str, listed))) > 4096  # more than a page of /proc
        assert set(listed) >= {c.pid for c in children}
        assert procfs.state(children[0].pid) in "SR"
        assert procfs.real_uid(children[0].pid) == os.getuid()
    finally:
        for c in children:
            c.send_signal(signal.SIGKILL)
        for c in children:
            c.wait()
    assert procfs.state(children[0].pid) == "X" and procfs.real_uid(children[0].pid) is None
