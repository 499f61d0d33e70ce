"""The names of the resources policies match, one function per kind. Every route builds the
resource it checks through these, so a policy written against this list means what it says.

    dag/<dagId>                 a DAG (list, read, register, delete, pause, trigger)
    dag/<dagId>/run/<runId>     one run of that DAG, and its logs
    connection/<id>             a connection
    iam/user/<name>             a user, its password and its access keys
    iam/group/<name>            a group and its membership
    iam/policy/<name>           a policy and where it is attached
    cluster                     cluster-wide operations (workers, join tokens, keys, audit)

Pure: no I/O, no state."""

from __future__ import annotations

import fnmatch
import re

CLUSTER = "cluster"

FORMS = (
    "dag/<dagId>, dag/<dagId>/run/<runId>, connection/<id>, iam/user/<name>, "
    "iam/group/<name>, iam/policy/<name>, cluster"
)

_WILDCARD = re.compile(r"[*?\[]")


def dag(dag_id: str) -> str:
    return f"dag/{dag_id}"


def run(dag_id: str, run_id: str) -> str:
    """A run and its logs: under its DAG, so ``dag/hello/*`` does not reach ``hello-payroll``."""
    return f"dag/{dag_id}/run/{run_id}"


def dag_of_run_id(run_id: str) -> str:
    """The DAG a run id names (``<dagId>-<createdMs>-<seq>``; DAG ids may hold ``-``, the
    other two parts may not). For a run that does not exist, so that asking for it is
    refused exactly like asking for a run that exists and may not be seen."""
    return run_id.rsplit("-", 2)[0]


def connection(connection_id: str) -> str:
    return f"connection/{connection_id}"


def user(name: str) -> str:
    return f"iam/user/{name}"


def group(name: str) -> str:
    return f"iam/group/{name}"


def policy(name: str) -> str:
    return f"iam/policy/{name}"


def literal(resource: str) -> str:
    """``resource`` as a pattern that matches it alone (wildcard characters escaped)."""
    return _WILDCARD.sub(lambda m: f"[{m.group()}]", resource)


#: What each resource is made of, segment by segment (between ``/``): a word, one of several
#: words, or a name of a kind (as the API takes them in: a DAG id, a run id, which is its DAG's
#: id and two numbers, a connection id, which has no dot, and a user, group or policy name).
_DAG_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_CONNECTION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_IAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*")
_Segment = str | tuple[str, ...] | re.Pattern[str]
_SHAPES: tuple[tuple[_Segment, ...], ...] = (
    ("dag", _DAG_ID),
    ("dag", _DAG_ID, "run", _DAG_ID),
    ("connection", _CONNECTION_ID),
    ("iam", ("user", "group", "policy"), _IAM_NAME),
    (CLUSTER,),
)


def _whole(segment: str, shape: _Segment) -> bool:
    if isinstance(shape, str):
        return segment == shape
    if isinstance(shape, tuple):
        return segment in shape
    return shape.fullmatch(segment) is not None


def _begins(segment: str, shape: _Segment) -> bool:
    """Whether ``segment`` is the start of some segment of ``shape`` (empty: always)."""
    if isinstance(shape, str):
        return shape.startswith(segment)
    if isinstance(shape, tuple):
        return any(word.startswith(segment) for word in shape)
    return not segment or shape.fullmatch(segment) is not None


def _leads_into(fixed: str, shape: tuple[_Segment, ...], *, whole: bool) -> bool:
    """Whether ``fixed`` is a resource of ``shape`` (``whole``) or the start of one."""
    segments = fixed.split("/")
    if len(segments) > len(shape) or (whole and len(segments) != len(shape)):
        return False
    *done, last = segments
    return all(_whole(s, t) for s, t in zip(done, shape, strict=False)) and (
        _whole(last, shape[len(done)]) if whole else _begins(last, shape[len(done)])
    )


def pattern_problem(pattern: str) -> str | None:
    """Why a policy's Resource pattern can never match a kiok resource, or None: a pattern
    without wildcards must be a resource (``dag/`` or ``connection/a.b`` is none), and the
    part of one before its first wildcard must be the start of one (``*``, ``d*``, ``dag/x*``,
    ``iam/*``; not ``cluster?`` nor ``cluster/*``, ``cluster`` being one resource with nothing
    below it, nor ``run/x*``, runs before they were named by their DAG).
    A Deny that matches nothing would deny nothing without a word."""
    fixed = _WILDCARD.split(pattern, maxsplit=1)[0]
    whole = fixed == pattern
    if fixed.startswith(CLUSTER) and not fnmatch.fnmatchcase(CLUSTER, pattern):
        pass  # ``cluster`` is one resource, with nothing below it: ``cluster?``, ``cluster/*``
    elif any(_leads_into(fixed, shape, whole=whole) for shape in _SHAPES):
        return None
    hint = "; runs and their logs are dag/<dagId>/run/<runId>" if fixed.startswith("run") else ""
    return f"{pattern!r} names no kiok resource (resources: {FORMS}){hint}"
