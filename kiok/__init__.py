"""kiok: a distributed DAG orchestrator.

The public surface of the package itself is the DAG-authoring SDK:
``from kiok import Dag, conn, secret``. Everything else lives in subpackages.
"""

from kiok.dag.sdk import Dag, Task, conn, secret

__all__ = ["Dag", "Task", "conn", "secret"]
