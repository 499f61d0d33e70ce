"""``GET /api/v1/me``: who the caller is and which actions its policies allow, so a client
(the admin UI) hides or disables what would be refused instead of offering it and showing a
403 afterwards. The API still checks every request; this is a hint, never a grant."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from kiok.master.api.deps import node_of, signed_in
from kiok.master.auth import Principal
from kiok.security import actions, resources
from kiok.security.policy import allowed_anywhere, is_allowed

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


@router.get("/me")
async def me(request: Request, principal: Principal = Depends(signed_in)) -> dict[str, Any]:
    """The caller's user and groups, and ``allowed``: for each action the UI offers, whether
    the caller's policies allow it — on ``cluster`` (cluster actions), or on some resource
    (DAG, run, connection and IAM actions, which a policy may grant on some records only: the
    API then decides record by record)."""
    documents = node_of(request).iam.documents(principal)
    allowed = {action: is_allowed(documents, action, resource) for action, resource in _ON_RESOURCE.items()}
    allowed.update({action: allowed_anywhere(documents, action) for action in _ANYWHERE})
    return {"user": principal.user, "groups": list(principal.groups), "allowed": allowed}
