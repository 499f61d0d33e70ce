"""The catalogue of actions an API route can require. Every ``/api/v1`` route names one;
policies (IAM) will allow or deny them by name and resource."""

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
READ_LOG = "logs:Read"
READ_CLUSTER = "cluster:Read"
READ_METRICS = "cluster:Metrics"
ISSUE_JOIN_TOKEN = "cluster:IssueJoinToken"
LIST_WORKERS = "cluster:ListWorkers"
REVOKE_WORKER = "cluster:RevokeWorker"
READ_API_SCHEMA = "api:ReadSchema"
LIST_KEYS = "kms:List"
ROTATE_KEY = "kms:Rotate"
