"""DAG specs: the compiled ``DagSpec``, its loaders (YAML, JSON), validation and the Python SDK."""

from kiok.dag.sdk import Dag, conn, secret

__all__ = ["Dag", "conn", "secret"]
