"""Working directories: distinct while in use, reused once given back, never handed out with
what an earlier process left behind."""

from __future__ import annotations

import os
from pathlib import Path

from kiok.worker.process import WorkDirs
from kiok.worker.spawner import empty_dir


def test_directories_in_use_are_distinct_and_reused_after(tmp_path: Path) -> None:
    dirs = WorkDirs(tmp_path)
    a, b = dirs.take(), dirs.take()
    assert a != b and a.is_dir() and b.is_dir()
    dirs.give_back(a)
    assert dirs.take() == a


def test_a_stale_directory_with_this_pid_is_wiped_first(tmp_path: Path) -> None:
    stale = tmp_path / f"{os.getpid()}.1"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "old.txt").write_text("from a crashed process")
    assert list(WorkDirs(tmp_path).take().iterdir()) == []


def test_emptying_removes_files_trees_and_links_but_not_link_targets(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    work = tmp_path / "work"
    (work / "deep" / "er").mkdir(parents=True)
    (work / "deep" / "er" / "f").write_text("x")
    (work / "file").write_text("x")
    (work / "link").symlink_to(outside)
    empty_dir(str(work))
    assert work.is_dir() and list(work.iterdir()) == []
    assert (outside / "keep.txt").exists()
