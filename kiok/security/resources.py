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

import re

CLUSTER = "cluster"

#: Every resource starts with one of these; a policy pattern that cannot match any of them is
#: refused (``pattern_problem``) rather than stored to match nothing.
KINDS = ("dag/", "connection/", "iam/user/", "iam/group/", "iam/policy/", CLUSTER)

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


def pattern_problem(pattern: str) -> str | None:
    """Why a policy's Resource pattern can never match a kiok resource, or None. The part
    before the first wildcard must lead into one of ``KINDS`` (``*``, ``d*``, ``dag/x``,
    ``iam/*``); ``run/x`` (runs before they were named by their DAG) is refused."""
    fixed = _WILDCARD.split(pattern, maxsplit=1)[0]
    if any(kind.startswith(fixed) or fixed.startswith(kind) for kind in KINDS):
        return None
    hint = "; runs and their logs are dag/<dagId>/run/<runId>" if fixed.startswith("run") else ""
    return f"{pattern!r} names no kiok resource (resources: {FORMS}){hint}"
