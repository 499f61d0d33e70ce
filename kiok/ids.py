"""Typed identifiers: distinct types for DAG, run, task and worker ids so that a run id is
never passed where a task id is expected. They are plain ``str`` at run time."""

from __future__ import annotations

import re
from typing import NewType

DagId = NewType("DagId", str)
RunId = NewType("RunId", str)
TaskId = NewType("TaskId", str)
WorkerId = NewType("WorkerId", str)
UserName = NewType("UserName", str)

#: A user's name (IAM, the bootstrap administrator): letters, digits and ``_.@-``, starting
#: with a letter or digit, at most 128 characters.
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}\Z")

#: The reserved task id under which a run's orchestration log (driver events) is kept.
RUN_LOG_TASK = TaskId("__run__")
