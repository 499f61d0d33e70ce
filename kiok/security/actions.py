"""The catalogue of actions a policy allows or denies, by name and resource (the resource
names are in ``kiok.security.resources``; docs/api.md lists every action with its resource
and what it allows). Every ``/api/v1`` route checks one or more of them.

What every signed-in user may do without a policy is ``SELF_SERVICE`` (an explicit Deny in
the user's policies still wins) plus ``CHANGE_PASSWORD`` and ``READ_API_SCHEMA``."""

from __future__ import annotations

CHANGE_PASSWORD = "auth:ChangePassword"
LIST_DAGS = "dags:List"
READ_DAG = "dags:Read"
REGISTER_DAG = "dags:Register"
DELETE_DAG = "dags:Delete"
PAUSE_DAG = "dags:Pause"
TRIGGER_DAG = "dags:Trigger"
LIST_RUNS = "runs:List"
READ_RUN = "runs:Read"
CANCEL_RUN = "runs:Cancel"
RERUN_RUN = "runs:Rerun"
"""Re-run a finished run's failed tasks, or a task and its downstream (dag/<dagId>/run/<runId>)."""
DELETE_RUN = "runs:Delete"
READ_LOG = "logs:Read"
READ_CLUSTER = "cluster:Read"
READ_METRICS = "cluster:Metrics"
ISSUE_JOIN_TOKEN = "cluster:IssueJoinToken"
LIST_WORKERS = "cluster:ListWorkers"
REVOKE_WORKER = "cluster:RevokeWorker"
READ_API_SCHEMA = "api:ReadSchema"
READ_CONNECTION = "connections:Read"
WRITE_CONNECTION = "connections:Write"
DELETE_CONNECTION = "connections:Delete"
USE_CONNECTION = "connections:Use"
"""Refer to a connection in a DAG (``connection/<id>``), checked when the DAG is registered:
its values reach the DAG's tasks and webhooks, which send them wherever their author wrote."""
READ_AUDIT = "audit:Read"
LIST_KEYS = "kms:List"
ROTATE_KEY = "kms:Rotate"
MAINTENANCE = "admin:Maintenance"
"""Switch maintenance mode on or off (``cluster``); reading it needs ``cluster:Read``."""
BACKUP = "admin:Backup"
"""Take a backup now, or set the backup schedule (``cluster``)."""
LIST_BACKUPS = "admin:ListBackups"
"""List the backups and read the backup schedule (``cluster``)."""
RESTORE = "admin:Restore"
"""Replace every store with a backup's content (``cluster``): destructive."""

# --- IAM: on iam/user/<name>, iam/group/<name>, iam/policy/<name> ----------------------------
READ_IAM = "iam:Read"
"""List users, groups, policies (each shown only if readable)."""
WRITE_IAM = "iam:Write"
"""Create, update or delete a user (with its first password), group or policy record."""
SET_PASSWORD = "iam:SetPassword"
"""Set the password of an existing user (iam/user/<name>); one's own goes through
``auth:ChangePassword`` with the old password."""
ADD_USER_TO_GROUP = "iam:AddUserToGroup"
"""Put a user in a group (iam/group/<group>): also needed to add oneself."""
REMOVE_USER_FROM_GROUP = "iam:RemoveUserFromGroup"
"""Take a user out of a group (iam/group/<group>): the group may hold a Deny."""
ATTACH_POLICY = "iam:AttachPolicy"
"""Attach a policy to a user or group (iam/policy/<policy>)."""
DETACH_POLICY = "iam:DetachPolicy"
"""Detach a policy from a user or group (iam/policy/<policy>): it may be a Deny."""
CREATE_ACCESS_KEY = "iam:CreateAccessKey"
"""Create an access key for a user (iam/user/<owner>)."""
LIST_ACCESS_KEYS = "iam:ListAccessKeys"
"""List a user's access keys (iam/user/<owner>)."""
DELETE_ACCESS_KEY = "iam:DeleteAccessKey"
"""Delete one of a user's access keys (iam/user/<owner>)."""

#: Allowed to every user on its own ``iam/user/<name>`` unless a policy denies it.
SELF_SERVICE = (CREATE_ACCESS_KEY, LIST_ACCESS_KEYS, DELETE_ACCESS_KEY)
