"""``GET /api/v1/me``: who the caller is and which actions its policies allow, so a client
(the admin UI) hides or disables what would be refused instead of offering it and showing a
403 afterwards. The API still checks every request; this is a hint, never a grant.

With ``?dag=<id>`` (repeatable) it also answers the DAG actions on each of those DAGs, with
``?run=<runId>`` (repeatable) the run actions on each of those runs, and with ``?user=<name>``
(repeatable) the IAM actions on each of those users (its access keys, password, record),
decided as the routes that take them decide (same resource, same policy check)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query, Request

from kiok.dag.validate import ID_PATTERN
from kiok.errors import InvalidInput
from kiok.master.api.deps import node_of, signed_in
from kiok.master.auth import Principal
from kiok.security import actions, resources
from kiok.security.policy import allowed_anywhere, is_allowed

if TYPE_CHECKING:
    from kiok.master.iam import Grants
    from kiok.master.node import MasterNode

router = APIRouter(prefix="/api/v1", tags=["auth"])

#: Actions on one fixed resource: answered for that resource.
_ON_RESOURCE: dict[str, str] = {
    actions.READ_CLUSTER: resources.CLUSTER,
    actions.MAINTENANCE: resources.CLUSTER,
    actions.ISSUE_JOIN_TOKEN: resources.CLUSTER,
    actions.LIST_WORKERS: resources.CLUSTER,
    actions.REVOKE_WORKER: resources.CLUSTER,
    actions.READ_AUDIT: resources.CLUSTER,
    actions.LIST_KEYS: resources.CLUSTER,
    actions.ROTATE_KEY: resources.CLUSTER,
    actions.BACKUP: resources.CLUSTER,
    actions.LIST_BACKUPS: resources.CLUSTER,
    actions.RESTORE: resources.CLUSTER,
}

#: Actions on many resources (DAGs, runs, connections, IAM records): answered "on some resource".
_ANYWHERE = (
    actions.LIST_DAGS,
    actions.READ_DAG,
    actions.REGISTER_DAG,
    actions.DELETE_DAG,
    actions.PAUSE_DAG,
    actions.TRIGGER_DAG,
    actions.LIST_RUNS,
    actions.READ_RUN,
    actions.CANCEL_RUN,
    actions.RERUN_RUN,
    actions.DELETE_RUN,
    actions.READ_LOG,
    actions.READ_CONNECTION,
    actions.WRITE_CONNECTION,
    actions.DELETE_CONNECTION,
    actions.USE_CONNECTION,
    actions.READ_IAM,
    actions.WRITE_IAM,
    actions.SET_PASSWORD,
    actions.ATTACH_POLICY,
    actions.DETACH_POLICY,
    actions.ADD_USER_TO_GROUP,
    actions.REMOVE_USER_FROM_GROUP,
    actions.CREATE_ACCESS_KEY,
    actions.LIST_ACCESS_KEYS,
    actions.DELETE_ACCESS_KEY,
)

#: Actions the DAG routes check on ``dag/<dagId>`` (list, read and its versions, register,
#: delete, pause and unpause, trigger and backfill).
_ON_DAG = (
    actions.LIST_DAGS,
    actions.READ_DAG,
    actions.REGISTER_DAG,
    actions.DELETE_DAG,
    actions.PAUSE_DAG,
    actions.TRIGGER_DAG,
)

#: Actions the run routes check on ``dag/<dagId>/run/<runId>`` (read, cancel, re-run,
#: delete, its logs).
_ON_RUN = (actions.READ_RUN, actions.CANCEL_RUN, actions.RERUN_RUN, actions.DELETE_RUN, actions.READ_LOG)

#: Actions the IAM routes check on ``iam/user/<name>`` (its access keys: one's own by
#: ``actions.SELF_SERVICE``; its record and password).
_ON_USER = (
    actions.CREATE_ACCESS_KEY,
    actions.LIST_ACCESS_KEYS,
    actions.DELETE_ACCESS_KEY,
    actions.READ_IAM,
    actions.WRITE_IAM,
    actions.SET_PASSWORD,
)

#: A user's name (``kiok.master.api.iam``).
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")

#: How many ``dag`` (and how many ``run``, ``user``) ids one request may ask about.
MAX_IDS = 200

#: A run id: its DAG's id, its creation time and a sequence number (``kiok.store.apply_runs``).
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}-[0-9]{1,20}-[0-9]{1,20}")


def _checked(ids: list[str], name: str, valid: re.Pattern[str], what: str) -> list[str]:
    """``ids`` without repeats, or ``InvalidInput`` (400) naming the limit or the bad id."""
    if len(ids) > MAX_IDS:
        raise InvalidInput(f"{name}: at most {MAX_IDS} ids per request, got {len(ids)}")
    for value in ids:
        if not valid.fullmatch(value):
            raise InvalidInput(f"{name}: {value[:60]!r} is not a {what}")
    return list(dict.fromkeys(ids))


def _on_dag(grants: Grants, dag_id: str) -> dict[str, bool]:
    """What the DAG routes would decide on ``dag/<dagId>``; ``runs:List`` as ``GET
    /runs?dag=<dagId>`` does: whether some run of the DAG may be listed (the list then
    shows each run only if allowed)."""
    resource = resources.dag(dag_id)
    answer = {action: grants.allows(action, resource) for action in _ON_DAG}
    answer[actions.LIST_RUNS] = grants.allows_under(actions.LIST_RUNS, resources.run(dag_id, ""))
    return answer


def _on_run(node: MasterNode, grants: Grants, run_id: str) -> dict[str, bool]:
    """What the run routes would decide on the run (``dag/<its dagId>/run/<runId>``, as
    ``runs._run_resource`` names it). An unknown run: all false (every route on it fails,
    with a 403 or, for a caller allowed on its resource, a 404)."""
    header = node.reader.run_header(run_id)
    if header is None:
        return dict.fromkeys(_ON_RUN, False)
    resource = resources.run(header["dagId"], run_id)
    return {action: grants.allows(action, resource) for action in _ON_RUN}


@router.get("/me", responses={400: {"description": "a bad id, or more than 200 of a kind"}})
async def me(
    request: Request,
    dag: list[str] = Query(default=[], description="a DAG id: add `allowedOn[<dagId>]` (at most 200)"),
    run: list[str] = Query(default=[], description="a run id: add `allowedOnRun[<runId>]` (at most 200)"),
    user: list[str] = Query(default=[], description="a user: add `allowedOnUser[<user>]` (at most 200)"),
    principal: Principal = Depends(signed_in),
) -> dict[str, Any]:
    """The caller's user and groups, and ``allowed``: for each action the UI offers, whether
    the caller's policies allow it — on ``cluster`` (cluster actions), or on some resource
    (DAG, run, connection and IAM actions, which a policy may grant on some records only: the
    API then decides record by record). With ``dag=<id>``: ``allowedOn``, for each such DAG
    the DAG actions on it; with ``run=<runId>``: ``allowedOnRun``, for each such run the run
    actions on it (all false for a run that does not exist); with ``user=<name>``:
    ``allowedOnUser``, for each such user the IAM actions on it (the UI offers another user's
    access keys only where they may be made or deleted)."""
    dag_ids = _checked(dag, "dag", ID_PATTERN, "DAG id")
    run_ids = _checked(run, "run", _RUN_ID, "run id")
    users = _checked(user, "user", _USER_NAME, "user name")
    node = node_of(request)
    documents = node.iam.documents(principal)
    allowed = {action: is_allowed(documents, action, resource) for action, resource in _ON_RESOURCE.items()}
    allowed.update({action: allowed_anywhere(documents, action) for action in _ANYWHERE})
    answer: dict[str, Any] = {"user": principal.user, "groups": list(principal.groups), "allowed": allowed}
    grants = node.iam.grants(principal)
    if dag_ids:
        answer["allowedOn"] = {dag_id: _on_dag(grants, dag_id) for dag_id in dag_ids}
    if run_ids:
        answer["allowedOnRun"] = {run_id: _on_run(node, grants, run_id) for run_id in run_ids}
    if users:
        answer["allowedOnUser"] = {name: _on_user(grants, name) for name in users}
    return answer


def _on_user(grants: Grants, name: str) -> dict[str, bool]:
    """What the IAM routes would decide on ``iam/user/<name>``."""
    resource = resources.user(name)
    return {action: grants.allows(action, resource) for action in _ON_USER}
