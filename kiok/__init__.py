"""kiok: a distributed DAG orchestrator.

The public surface of the package itself is the DAG-authoring SDK:
``from kiok import Dag, conn, secret`` (and ``webhook``/``email`` for ``notify``).
Everything else lives in subpackages.
"""

from kiok.dag.sdk import Dag, Task, conn, email, secret, webhook

__all__ = ["Dag", "Task", "conn", "email", "secret", "webhook"]
