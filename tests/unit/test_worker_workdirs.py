"""Working directories: distinct while in use, reused once given back, never handed out with
what an earlier process left behind."""

from __future__ import annotations

import os
from pathlib import Path

from kiok.worker.process import WorkDirs
from kiok.worker.scratch import empty_dir


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


def _deep_tree(top: Path, depth: int) -> None:
    """A chain of ``depth`` directories under ``top`` (with a file at its end): deeper than
    Python's recursion limit, and its path far longer than PATH_MAX."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d" * 100, dir_fd=fd)
            deeper = os.open("d" * 100, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = deeper
        os.close(os.open("end", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    finally:
        os.close(fd)


def test_emptying_reaches_any_depth_and_gives_the_directory_its_mode_back(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    _deep_tree(work, 2000)
    (work / "planted").write_text("x")
    (work / "open").mkdir()
    (work / "open" / "f").write_text("x")
    work.chmod(0o777)
    empty_dir(str(work))
    assert list(work.iterdir()) == [] and work.stat().st_mode & 0o7777 == 0o700


def test_a_temporary_root_goes_whole_however_deep_what_is_left_in_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    dirs = WorkDirs(root, temporary=True)
    _deep_tree(dirs.take(), 2000)
    dirs.discard()
    assert not root.exists()
    stale = tmp_path / "again" / f"{os.getpid()}.1"
    stale.mkdir(parents=True)
    _deep_tree(stale, 2000)
    assert list(WorkDirs(tmp_path / "again").take().iterdir()) == []
