from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiok.testing.process import Standalone
from tests.s3_fixture import s3_moto, s3_seaweed, s3_server  # noqa: F401  (fixtures for every test)


@pytest.fixture
def standalone_factory(tmp_path: Path) -> Iterator[object]:
    started: list[Standalone] = []

    def make(name: str = "kiok", env: dict[str, str] | None = None, start: bool = True) -> Standalone:
        node = Standalone(tmp_path / name, env)
        started.append(node)
        return node.start() if start else node

    yield make
    for node in started:
        node.stop()


@pytest.fixture
def kiok(standalone_factory: object) -> Standalone:
    """A running ``kiok standalone`` on free ports with its own data directory."""
    node: Standalone = standalone_factory()  # type: ignore[operator]
    return node


@pytest.fixture(scope="module")
def shared_kiok(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    """One ``kiok standalone`` shared by the tests of a module that do not restart it."""
    node = Standalone(tmp_path_factory.mktemp("shared") / "kiok", {"KIOK_WORKER_TASK_SLOTS": "8"})
    node.start()
    yield node
    node.stop()


@pytest.fixture
def task_tmp_path() -> Iterator[Path]:
    """A temporary directory tasks can write to and the test can read. Isolated tasks run as
    ``kiok.worker.task.user``, who cannot reach pytest's ``tmp_path`` (under a 0700 directory).
    As root it is not under /tmp: isolated tasks have their spawner's own /tmp, which shows
    only the host's root directories that existed when the spawner started (a module's
    shared standalone starts before a test's directory is made)."""
    base = None
    if os.geteuid() == 0:
        base = "/var/lib/kiok-tests"
        os.makedirs(base, 0o755, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="kiok-test-", dir=base))
    path.chmod(0o1777)  # like /tmp: anyone may create, only the owner (or root) may remove
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def processes() -> Iterator[list[Standalone]]:
    """kiok processes a test starts (masters, workers), stopped in reverse order at its end."""
    started: list[Standalone] = []
    yield started
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The root logger's handlers and level as they were before the test: code that sets up
    kiok's logging (a server command run in-process, ``kiok.logs.setup``) replaces them."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
