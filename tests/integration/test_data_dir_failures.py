"""Crash-only on a broken data directory, on real processes: a full disk (a small tmpfs
filled with dd) turns the failed write into a 503, never a 500, and stops the process at
once with one line and exit code 1; with space back a restart continues from what was
written. A data directory removed under a running process stops it the same way.

Needs root (mount): the suite runs as root in CI."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kiok.testing.process import Standalone

pytestmark = pytest.mark.slow

#: Long enough to be running while the disk fills, short enough to finish after the restart.
DAG = """dag: {id: disk}
tasks:
  - id: t
    script: 'for i in $(seq 1 300); do echo line $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; sleep 0.02; done'
"""
#: How long a process may take to stop by itself once its data directory is broken.
STOP_WITHIN_S = 15


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs, unmounted whatever happens."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], check=False).returncode:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True, check=False)
    return filler


def wait_exit(node: Standalone, what: str) -> list[int]:
    """Trigger runs until ``node`` stops by itself; the statuses it answered."""
    assert node.proc is not None
    statuses: list[int] = []
    deadline = time.monotonic() + STOP_WITHIN_S
    while node.proc.poll() is None:
        assert time.monotonic() < deadline, f"still running {STOP_WITHIN_S} s after {what}"
        with contextlib.suppress(httpx.HTTPError):  # stopping: the port is closed
            r = node.api("POST", "/api/v1/dags/disk/runs", json={"args": {}}, timeout=5)
            statuses.append(r.status_code)
        time.sleep(0.2)
    return statuses


def the_line(out: str, words: str) -> str:
    """The one line of ``out`` with ``words``; no traceback anywhere."""
    assert "Traceback" not in out, out[-4000:]
    found = [line for line in out.splitlines() if words in line]
    assert len(found) == 1, out[-4000:]
    return found[0]


def test_a_full_disk_stops_the_process_with_one_line_and_a_restart_continues(
    small_disk: Path, tmp_path: Path
) -> None:
    # A drain would wait this long: the process must not.
    node = Standalone(small_disk / "s", {"KIOK_WORKER_SHUTDOWN_DRAIN_TIMEOUT_SECONDS": "60"})
    node.log_path = tmp_path / "s.log"
    node.start()
    try:
        node.register(DAG)
        done = node.trigger("disk")
        assert node.wait_run(done, 60)["state"] == "SUCCESS"
        running = node.trigger("disk")
        node.wait_run(running, 30, states=("RUNNING",))
        filler = fill(small_disk)
        statuses = wait_exit(node, "the disk filled")
        assert node.proc is not None and node.proc.returncode == 1
        assert 500 not in statuses and set(statuses) <= {201, 503}, statuses
        line = the_line(node.read_log(), "No space left on device")
        assert "cannot write" in line and "restart it once the disk has room" in line, line

        filler.unlink()
        node.start()
        assert node.run(done)["state"] == "SUCCESS"
        assert "line 300 " in node.log(done, "t")
        assert node.wait_run(running, 60)["state"] == "SUCCESS"  # it went on after the restart
        assert node.wait_run(node.trigger("disk"), 60)["state"] == "SUCCESS"
    finally:
        node.stop()


def test_a_removed_data_directory_stops_the_process_with_one_line(tmp_path: Path) -> None:
    node = Standalone(tmp_path / "s", {"KIOK_WORKER_SHUTDOWN_DRAIN_TIMEOUT_SECONDS": "60"})
    node.log_path = tmp_path / "s.log"
    node.start()
    try:
        node.register(DAG)
        running = node.trigger("disk")
        node.wait_run(running, 30, states=("RUNNING",))
        shutil.rmtree(node.data_dir)
        wait_exit(node, "its data directory was removed")
        assert node.proc is not None and node.proc.returncode == 1
        line = the_line(node.read_log(), "was removed or replaced while kiok ran")
        assert str(node.data_dir) in line and "nothing more is written" in line, line
        assert not (node.data_dir / "state").exists()  # no store begun anew in its place
    finally:
        node.stop()
