"""kiok: a distributed DAG orchestrator.

The public surface of the package itself is the DAG-authoring SDK:
``from kiok import Dag, conn, secret`` (and ``webhook``/``email`` for ``notify``), with
``DagValidationError``, which the SDK raises for a document it refuses.
Everything else lives in subpackages.
"""

from kiok.dag.sdk import Dag, Task, conn, email, secret, webhook
from kiok.errors import DagValidationError

__all__ = ["Dag", "DagValidationError", "Task", "conn", "email", "secret", "webhook"]
