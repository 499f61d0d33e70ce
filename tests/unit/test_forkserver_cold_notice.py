"""A python template that is not started by design (docs/dags.md, "Forked or cold": a
``PYTHON*`` variable a root-started template cannot apply, an interpreter root does not alone
control) is a documented fallback, not a fault: said once as a WARNING, in one sentence
that says why, with no errno; a template that could not start for another reason is still
an ERROR."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import pytest

from kiok.worker import forkserver as fs
from kiok.worker import process
from kiok.worker import spawn_protocol as sp


class RootHost:
    """A spawner with attempt users (its template would start as root) and ``env``."""

    def __init__(self, env: dict[str, str]) -> None:
        self.base_env = env
        self.template_user: int | None = 12345
        self.sent: list[sp.Message] = []

    def acting_as(self, euid: int, *, real: int | None = None) -> contextlib.AbstractContextManager[None]:
        raise AssertionError("no template is to be started")

    def send(self, msg: sp.Message) -> None:
        self.sent.append(msg)


@pytest.fixture
def said() -> Iterator[None]:
    process._SAID.clear()
    yield
    process._SAID.clear()


def _notices(host: RootHost) -> list[sp.Notice]:
    templates = fs.Templates(host)  # type: ignore[arg-type]
    templates.configure(sp.Template("/usr/bin/python3", [], 1000))
    templates.configure(sp.Template("/usr/bin/python3", [], 1000))  # said once all the same
    assert templates.for_start(sp.Start(1, ["/usr/bin/python3"], "/", {}, 1, 1, "", fork=True)) is None
    return [msg for msg in host.sent if isinstance(msg, sp.Notice)]


def test_a_python_variable_a_root_started_template_cannot_apply_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, said: None, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fs, "root_trusted", lambda python: None)
    (notice,) = _notices(RootHost({"PATH": "/usr/bin", "PYTHONHASHSEED": "0"}))
    assert notice == sp.Notice(
        "python tasks run cold, each a new /usr/bin/python3: the worker's environment sets "
        "PYTHONHASHSEED, which the python template (started as root, with python -E) could not apply",
        warning=True,
    )
    wire = sp.from_wire(sp.to_wire(notice))
    assert wire == notice
    caplog.set_level(logging.INFO, "kiok.worker.process")
    process._say_once(notice.message, warning=notice.warning)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and "Errno" not in record.getMessage(), record
    assert record.getMessage() == f"task spawner: {notice.message}"


def test_an_interpreter_root_does_not_alone_control_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fs, "root_trusted", lambda python: "/opt/py belongs to uid 54321")
    (notice,) = _notices(RootHost({"PATH": "/usr/bin"}))
    assert notice.warning and "Errno" not in notice.message, notice
    assert notice.message == (
        "python tasks run cold, each a new /usr/bin/python3: the python template, started as root, "
        "runs only an interpreter root alone can change, and /opt/py belongs to uid 54321"
    )


def test_a_notice_of_a_fault_is_still_an_error(said: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "kiok.worker.process")
    old_wire = [sp.Kind.NOTICE, "kiok.worker.python.preload: cannot import x"]  # no level: an error
    notice = sp.from_wire(old_wire)
    assert isinstance(notice, sp.Notice) and not notice.warning
    process._say_once(notice.message, warning=notice.warning)
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
