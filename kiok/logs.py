"""kiok's own process log: text or JSON lines (``kiok.log.format``), who wrote each line
(``service``, ``instance``) and what it was about (``runId``, ``taskId``, ``requestId``).

The ids come from context variables: code that works for a run, a task attempt or an HTTP
request sets them once (``RUN_ID.set(...)``) and every line logged under it carries them,
also from tasks it starts (asyncio copies the context). A record may also name them itself
(``log.info(..., extra={"runId": ...})``). Only the composition roots call ``setup``; uvicorn's
loggers go through the same handler (``uvicorn.Config(log_config=None)``), and an exception
kiok logged is not logged a second time by uvicorn (``mark_logged``)."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any, TextIO

RUN_ID: ContextVar[str | None] = ContextVar("kiok_run_id", default=None)
TASK_ID: ContextVar[str | None] = ContextVar("kiok_task_id", default=None)
REQUEST_ID: ContextVar[str | None] = ContextVar("kiok_request_id", default=None)

FORMATS = ("text", "json")
#: The levels ``kiok.log.level`` takes (any case); another is refused, not taken for INFO.
LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
    "FATAL": logging.CRITICAL,
}
#: Libraries whose INFO lines are noise to an operator (a follower's httpx line every 0.5 s,
#: uvicorn's access lines, PySyncObj's connection chatter): WARNING and above only.
QUIET = ("httpx", "httpcore", "uvicorn.access", "uvicorn.error", "pysyncobj", "asyncio")
#: uvicorn's loggers: no handler of their own, they propagate to kiok's (one format, one stream).
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The flag ``mark_logged`` sets on an exception (exceptions take no weak references).
_LOGGED = "_kiok_logged"
_CONTEXT = (("runId", RUN_ID), ("taskId", TASK_ID), ("requestId", REQUEST_ID))


class Identity(logging.Filter):
    """Stamps every record with the process's ``service`` and ``instance``; the instance is
    told later (``identify``) when it is only known once the data directory is open."""

    def __init__(self, service: str, instance: str = "") -> None:
        super().__init__()
        self.service = service
        self.instance = instance

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.instance = self.instance
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (RFC 3339, UTC, ms), ``level``, ``logger``, ``msg``,
    ``service``, ``instance``, and ``runId``/``taskId``/``requestId`` when known, ``exc``
    with a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "service": getattr(record, "service", ""),
            "instance": getattr(record, "instance", ""),
        }
        for name, var in _CONTEXT:
            value = getattr(record, name, None) or var.get()
            if value:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with ``[run=… task=… req=…]`` when known."""

    def __init__(self) -> None:
        super().__init__(_TEXT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = [
            f"{short}={value}"
            for (name, var), short in zip(_CONTEXT, ("run", "task", "req"), strict=True)
            if (value := getattr(record, name, None) or var.get())
        ]
        return f"{line} [{' '.join(tags)}]" if tags else line


def mark_logged(error: BaseException) -> None:
    """Say that a record of kiok's carries ``error``'s traceback: uvicorn's own record of it
    ("Exception in ASGI application", when the app re-raises it after answering 500, as
    Starlette does) is then left out (``LoggedOnce``)."""
    setattr(error, _LOGGED, True)


class LoggedOnce(logging.Filter):
    """Drops a record whose exception ``mark_logged`` says is in the log already."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not getattr(error, _LOGGED, False)


def _route_server_loggers() -> None:
    """uvicorn's loggers write through the root's handler, so their lines have kiok's format
    (a uvicorn ``Config`` made with its default ``log_config`` gives them handlers of their
    own, in another format, and stops them propagating); a traceback kiok logged already is
    not logged again by uvicorn."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True
    errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, LoggedOnce) for f in errors.filters):
        errors.addFilter(LoggedOnce())


def setup(level: str, fmt: str, service: str, instance: str = "", stream: TextIO | None = None) -> Identity:
    """Configure the root logger once for this process; the returned filter's ``instance``
    can be set once known (``identify``). Raises ``ValueError`` for an unknown format or level."""
    if fmt not in FORMATS:
        raise ValueError(f"kiok.log.format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if level.upper() not in LEVELS:
        raise ValueError(f"kiok.log.level: expected one of {', '.join(LEVELS)}, got {level!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    identity = Identity(service, instance)
    handler.addFilter(identity)
    root = logging.getLogger()
    old_handlers = list(root.handlers)
    # The new handler first: a line logged meanwhile (a signal's) never finds none, which
    # would have Python print it bare.
    root.addHandler(handler)
    for old in old_handlers:
        root.removeHandler(old)
    root.setLevel(LEVELS[level.upper()])
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    _route_server_loggers()
    return identity


def identify(instance: str) -> None:
    """Name this process's instance (a master or worker id) on every line from now on."""
    for handler in logging.getLogger().handlers:
        for f in handler.filters:
            if isinstance(f, Identity):
                f.instance = instance
