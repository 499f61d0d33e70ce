"""Composition roots: one per process kind (``standalone``, ``master``, ``worker``). Only
these wire components together and read the process environment (through Settings)."""
