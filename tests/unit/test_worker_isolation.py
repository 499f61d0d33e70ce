"""Task isolation: the choice of mode (a table), the reachability checks behind the work
directory and the python interpreter, and the work directory's refusals."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiok.errors import InvalidInput
from kiok.worker import isolation as iso
from kiok.worker.isolation import (
    Isolation,
    decide,
    prepare_work_root,
    python_for_tasks,
    runnable_by,
    unsearchable,
)
from kiok.worker.process import WorkDirs

#: A user and group that own nothing here: "anyone else".
NOBODY = Isolation("user+pidns", "nobody", 65534, 65534, "/usr/bin/unshare")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory everyone can search (pytest's tmp_path sits under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="kiok-iso-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize(
    ("setting", "euid", "pidns", "mode", "warns"),
    [
        ("auto", 0, True, "user+pidns", False),
        ("auto", 0, False, "user", True),
        ("auto", 1000, True, "none", True),
        ("auto", 1000, False, "none", True),
        ("user", 0, True, "user+pidns", False),
        ("user", 0, False, "user", True),
        ("none", 0, True, "none", True),
        ("none", 1000, False, "none", True),
    ],
)
def test_the_mode_follows_from_setting_uid_and_namespaces(
    setting: str, euid: int, pidns: bool, mode: str, warns: bool
) -> None:
    got, warning = decide(setting, euid, pidns)
    assert got == mode and (warning is not None) == warns
    assert got in iso.MODES


def test_user_isolation_when_not_root_and_unknown_settings_are_refused() -> None:
    with pytest.raises(InvalidInput, match="needs kiok to run as root"):
        decide("user", 1000, True)
    with pytest.raises(InvalidInput, match="must be one of"):
        decide("strict", 0, True)


def test_the_spawner_command_drops_to_the_user_inside_a_pid_namespace() -> None:
    argv = ["python", "-m", "kiok.worker.spawner", "7"]
    assert iso.NO_ISOLATION.spawner_argv(argv) == argv
    assert Isolation("user", "t", 5, 6).spawner_argv(argv) == [*argv, "5:6"]
    pidns = Isolation("user+pidns", "t", 5, 6, "/usr/bin/unshare").spawner_argv(argv)
    assert pidns[0] == "/usr/bin/unshare" and "--pid" in pidns and "--mount-proc" in pidns
    assert pidns[-5:] == [*argv, "5:6"]
    assert Isolation("user", "t", 5, 6).spawner_env({"HOME": "/root", "USER": "root"})["USER"] == "t"


def test_unsearchable_names_the_first_closed_directory(open_dir: Path) -> None:
    closed = open_dir / "closed"
    inner = closed / "inner"
    inner.mkdir(parents=True)
    closed.chmod(0o700)
    assert unsearchable(open_dir, 65534, 65534) is None
    assert unsearchable(inner, 65534, 65534) == closed
    assert unsearchable(inner, os.geteuid(), os.getegid()) is None  # its owner may
    link = open_dir / "link"
    link.symlink_to(inner)  # the way a link leads counts too
    assert unsearchable(link, 65534, 65534) == closed


def test_runnable_by_checks_the_way_and_the_execute_bit(open_dir: Path) -> None:
    program = open_dir / "prog"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o700)
    assert "not executable" in (runnable_by(str(program), 65534, 65534) or "")
    program.chmod(0o755)
    assert runnable_by(str(program), 65534, 65534) is None
    assert "not on PATH" in (runnable_by("no-such-program-kiok", 65534, 65534) or "")


def test_python_tasks_fall_back_to_a_system_interpreter_only_when_none_is_configured(
    open_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    private = open_dir / "home"
    private.mkdir(mode=0o700)
    own = private / "python"
    own.write_text("")
    own.chmod(0o755)
    system = open_dir / "bin"
    system.mkdir(mode=0o755)
    (system / "python3").write_text("")
    (system / "python3").chmod(0o755)
    monkeypatch.setattr(iso, "_SYSTEM_PATH", str(system))
    assert python_for_tasks("", str(own), iso.NO_ISOLATION) == str(own)
    assert python_for_tasks("", str(own), NOBODY) == str(system / "python3")
    with caplog.at_level(logging.WARNING):
        assert python_for_tasks(str(own), "/usr/bin/python3", NOBODY) == str(own)
    assert "python tasks will fail" in caplog.text and str(private) in caplog.text


def test_the_isolated_work_root_is_kiok_own_reachable_and_not_a_link(open_dir: Path) -> None:
    root = prepare_work_root(str(open_dir / "new" / "work"), Path("/nonexistent"), "w1", NOBODY)
    st = root.stat()
    assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o711
    # Attempt directories belong to the task user, and only to it.
    attempt = WorkDirs(root, (NOBODY.uid, NOBODY.gid)).take()
    st = attempt.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY.uid, NOBODY.gid, 0o700)

    (open_dir / "elsewhere").mkdir()
    (open_dir / "link").symlink_to(open_dir / "elsewhere")
    with pytest.raises(InvalidInput, match="symbolic link"):
        prepare_work_root(str(open_dir / "link"), Path("/nonexistent"), "w1", NOBODY)
    theirs = open_dir / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY.uid, NOBODY.gid)
    with pytest.raises(InvalidInput, match="belongs to uid 65534"):
        prepare_work_root(str(theirs), Path("/nonexistent"), "w1", NOBODY)


def test_a_work_root_the_task_user_cannot_reach_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="out of reach of the task user nobody"):
        prepare_work_root(str(tmp_path / "work"), Path("/nonexistent"), "w1", NOBODY)
    # Without isolation nothing changes: <data>/work, wherever the data directory is.
    assert prepare_work_root("", tmp_path, "w1", iso.NO_ISOLATION) == tmp_path / "work"


def test_the_default_isolated_work_root_is_new_kiok_own_and_goes_at_the_end(
    open_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(open_dir))
    first = prepare_work_root("", Path("/data"), "w-7", NOBODY)
    second = prepare_work_root("", Path("/data"), "w-7", NOBODY)
    assert first != second and first.parent == open_dir and first.name.startswith("kiok-work-w-7-")
    st = first.stat()
    assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o711
    dirs = WorkDirs(first, (NOBODY.uid, NOBODY.gid), temporary=True)
    (dirs.take() / "left").write_text("by a task")
    dirs.discard()
    assert not first.exists()
    WorkDirs(second, (NOBODY.uid, NOBODY.gid)).discard()  # a configured root stays
    assert second.exists()
