"""Benchmarks and soaks (run as scripts or ``python -m bench.<name>``); not part of the test run."""
