"""kiok: a distributed DAG orchestrator."""
